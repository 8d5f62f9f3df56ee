"""Run bounded benchmark pipelines on the local Flink cluster.

A benchmark that compares runners needs the CPU time of every process that
does a Flink run's work, not only its own. With LOOPBACK the Python SDK
harness runs inside the benchmark process, so `time.process_time` covers
the Python side. The Java side runs in three other processes: Beam's job
server, Flink's JobManager and its TaskManager. Their CPU seconds are read
from /proc before and after each run.

The job server is started once per benchmark and reused by every run,
as a deployment would, so its JVM start-up is not part of a run.
"""

import os
import pathlib
import socket
import subprocess
import time

# Command-line fragments of the Java processes of a local Flink run.
JAVA_PROCESS_MARKERS = (
    "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
    "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
    "beam-runners-flink",
)
_STARTUP_TIMEOUT_SEC = 120


def java_cpu_seconds(markers=JAVA_PROCESS_MARKERS) -> float:
    """Return the CPU seconds used so far by processes matching a marker.

    Only Linux's /proc is read. A process that exits between two calls
    drops out of the sum, so call this around a run of processes that
    stay up, as the cluster and the job server do.
    """
    return sum(java_cpu_seconds_by_marker(markers).values())


def java_cpu_seconds_by_marker(markers=JAVA_PROCESS_MARKERS) -> dict:
    """Return the CPU seconds used so far per marker, as `java_cpu_seconds`."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(markers, 0.0)
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        marker = next((m for m in markers if m.encode() in command), None)
        if marker is None:
            continue
        # Fields after the command name, which is in parentheses and may
        # contain spaces: utime and stime are fields 14 and 15 of stat.
        fields = stat.rsplit(")", 1)[1].split()
        totals[marker] += (int(fields[11]) + int(fields[12])) / ticks
    return totals


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JobServer:
    """Beam's Flink job server on 127.0.0.1, started from its launcher jar.

    Use as a context manager. `endpoint` is the value for Beam's
    `--job_endpoint` option.
    """

    def __init__(self, jar: str, flink_master: str, log_path: pathlib.Path):
        self._jar = jar
        self._flink_master = flink_master
        self._log_path = log_path
        self._process = None
        self.endpoint = ""

    def __enter__(self) -> "JobServer":
        job_port = _free_port()
        command = [
            "java",
            "-jar",
            self._jar,
            f"--flink-master={self._flink_master}",
            "--job-host=127.0.0.1",
            f"--job-port={job_port}",
            f"--artifact-port={_free_port()}",
            f"--expansion-port={_free_port()}",
        ]
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )
        self.endpoint = f"127.0.0.1:{job_port}"
        self._wait_for_port(job_port)
        return self

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_SEC
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Flink job server exited with code "
                    f"{self._process.returncode}; read {self._log_path}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(
            f"Flink job server did not listen on port {port} within "
            f"{_STARTUP_TIMEOUT_SEC} s; read {self._log_path}"
        )

    def __exit__(self, *exc_info) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
