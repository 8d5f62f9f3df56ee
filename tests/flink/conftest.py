"""Fixtures that start the local Flink cluster and Beam's Flink job server.

The cluster is shared by the whole test session. It is stopped at the end
only when this session started it, so a cluster started earlier with
`make flink-start` keeps running.
"""

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from runners.cli import FLINK_DEFAULTS
from tests.flink.flink_rest import FlinkRestClient

# The vitals tests also need the broker. Importing the fixtures registers
# them here too, and the broker fixture stops only a broker it started.
from tests.kafka.conftest import kafka_broker, new_topic  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
FLINK_LOG_DIR = REPO_ROOT / ".cache" / "flink" / "log"
# A first start installs apache-flink from PyPI and resolves about 150 MB of
# jars from Maven Central, about 100 s each on a 2-core machine; 15 minutes
# leaves room for a slow registry.
_SETUP_TIMEOUT_SEC = 900
_STOP_TIMEOUT_SEC = 120


@dataclasses.dataclass(frozen=True)
class FlinkCluster:
    """A running Flink session cluster and the job server jar for Beam.

    Attributes:
      rest_url: Address of the REST API and the web UI.
      flink_master: Value for Beam's `--flink_master` option.
      job_server_jar: Launcher jar for Beam's `--flink_job_server_jar`.
      rest: Client for the REST API.
    """

    rest_url: str
    flink_master: str
    job_server_jar: str
    rest: FlinkRestClient

    def pipeline_args(self, job_name: str) -> list[str]:
        """Return the FlinkRunner options that every test pipeline needs.

        LOOPBACK runs the Python SDK harness inside the test process, so no
        Docker and no SDK install on the cluster is needed. Parallelism
        comes from the cluster's parallelism.default, which is 1.
        """
        return [
            "--runner=FlinkRunner",
            f"--flink_master={self.flink_master}",
            f"--flink_job_server_jar={self.job_server_jar}",
            "--environment_type=LOOPBACK",
            f"--job_name={job_name}",
            *FLINK_DEFAULTS,
        ]


def run_script(*args: str) -> str:
    """Run a script from scripts/ and return its stdout.

    Raises:
      RuntimeError: The script failed or timed out. The message contains
        its stderr, which names the log file to read.
    """
    command = [str(SCRIPTS_DIR / args[0]), *args[1:]]
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=_SETUP_TIMEOUT_SEC,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(
            f"{' '.join(args)} timed out after {_SETUP_TIMEOUT_SEC}s; "
            f"read the logs in {FLINK_LOG_DIR}"
        ) from error
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with exit code {completed.returncode}:"
            f"\n{completed.stderr}"
        )
    return completed.stdout


def _cluster_is_running() -> bool:
    status = subprocess.run(
        [str(SCRIPTS_DIR / "flink.sh"), "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=_STOP_TIMEOUT_SEC,
        check=False,
    )
    return status.returncode == 0


@pytest.fixture(scope="session")
def flink_cluster():
    """Start the cluster and build the job server, once per session."""
    port = os.environ.get("FLINK_REST_PORT", "8081")
    was_running = _cluster_is_running()
    run_script("flink.sh", "start")
    try:
        jar = run_script("flink_job_server.sh").strip()
        rest_url = f"http://127.0.0.1:{port}"
        yield FlinkCluster(
            rest_url=rest_url,
            flink_master=f"localhost:{port}",
            job_server_jar=jar,
            rest=FlinkRestClient(rest_url),
        )
    finally:
        if not was_running:
            run_script("flink.sh", "stop")
