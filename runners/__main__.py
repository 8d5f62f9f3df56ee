"""Entry point: `python -m runners run --runner RUNNER ...`."""

import sys
import warnings

# Google's client libraries, which Beam imports for its GCP connectors,
# warn about future Python and grpcio support on every start. Those
# notices concern the environment's maintainers, not a data engineer
# launching a job, so the CLI hides them; library code keeps them.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

from runners.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
