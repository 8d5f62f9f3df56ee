"""Entry point: `python -m runners run --runner RUNNER ...`."""

import sys

from runners.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
