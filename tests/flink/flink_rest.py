"""Read and control jobs through the REST API of a Flink session cluster.

A small client over the endpoints that the Flink tests use, with a
timeout on every request and every wait. Endpoint paths follow the Flink
1.19 REST API reference.
"""

import base64
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

# A REST call to a local cluster returns in milliseconds, so 10 s means the
# JobManager is stuck or gone.
_REQUEST_TIMEOUT_SEC = 10
_POLL_INTERVAL_SEC = 1.0
# Beam's Flink runner stores a job's Beam metrics in this accumulator.
_BEAM_METRICS_ACCUMULATOR = "__metricscontainers"
_USER_COUNTER_URN = "beam:metric:user:sum_int64:v1"


def wait_until(
    condition: Callable[[], Any],
    timeout_sec: float,
    description: str,
) -> Any:
    """Call `condition` until it returns a truthy value, and return that.

    Raises:
      TimeoutError: `condition` stayed falsy for `timeout_sec` seconds.
    """
    deadline = time.monotonic() + timeout_sec
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_sec}s: {description}")
        time.sleep(_POLL_INTERVAL_SEC)


def decode_varint(payload: bytes) -> int:
    """Decode an unsigned base-128 varint, the encoding of Beam's int64 sums."""
    value = 0
    for shift, byte in enumerate(payload):
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            return value
    raise ValueError(f"truncated varint: {payload!r}")


class FlinkRestClient:
    """Client for the REST API of one Flink cluster.

    Args:
      base_url: Address of the REST API, such as `http://127.0.0.1:8081`.
    """

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str) -> Any:
        return self._request("PATCH", path)

    def _request(self, method: str, path: str, body=None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(
            request, timeout=_REQUEST_TIMEOUT_SEC
        ) as response:
            text = response.read()
        return json.loads(text) if text else None

    def find_job(self, name: str) -> dict | None:
        """Return the `/jobs/overview` entry of the newest job named `name`."""
        jobs = [
            j for j in self.get("/jobs/overview")["jobs"] if j["name"] == name
        ]
        return max(jobs, key=lambda j: j["start-time"], default=None)

    def wait_for_job_state(
        self, name: str, states: set[str], timeout_sec: float
    ) -> dict:
        """Wait until the job named `name` is in one of `states`."""

        def job_in_state():
            job = self.find_job(name)
            return job if job and job["state"] in states else None

        return wait_until(
            job_in_state, timeout_sec, f"job {name!r} in state {states}"
        )

    def wait_for_running_tasks(self, job_id: str, timeout_sec: float) -> dict:
        """Wait until every task of the job is RUNNING, and return the job.

        A job is RUNNING as soon as it is scheduled, but checkpoints fail
        until every task has been deployed.
        """

        def all_tasks_running():
            job = self.get(f"/jobs/{job_id}")
            vertices = job["vertices"]
            running = all(v["status"] == "RUNNING" for v in vertices)
            return job if vertices and running else None

        return wait_until(
            all_tasks_running, timeout_sec, f"all tasks of {job_id} RUNNING"
        )

    def wait_for_checkpoints(
        self, job_id: str, completed: int, timeout_sec: float
    ) -> dict:
        """Wait until `completed` checkpoints completed, and return counts."""

        def enough_checkpoints():
            counts = self.get(f"/jobs/{job_id}/checkpoints")["counts"]
            return counts if counts["completed"] >= completed else None

        return wait_until(
            enough_checkpoints,
            timeout_sec,
            f"{completed} completed checkpoints of job {job_id}",
        )

    def read_user_counter_metric(
        self, job_id: str, namespace: str, name: str
    ) -> int | None:
        """Return a Beam counter summed over the job's vertex metrics.

        Beam's Flink runner registers a user counter on the operator metric
        group as `<namespace>_<name>`. The REST API lists it per subtask as
        `<subtask>.<operator>.<namespace>_<name>`. The JobManager fetches
        metrics from the TaskManagers at most every 10 s and only while the
        tasks run, so a first query may return nothing.

        Returns:
          The sum over all subtasks, or None when no vertex lists it yet.
        """
        suffix = f".{namespace}_{name}"
        total = None
        for vertex in self.get(f"/jobs/{job_id}")["vertices"]:
            metrics_path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            ids = [m["id"] for m in self.get(metrics_path)]
            matches = [i for i in ids if i.endswith(suffix)]
            if not matches:
                continue
            query = urllib.parse.quote(",".join(matches), safe=",")
            for metric in self.get(f"{metrics_path}?get={query}"):
                total = (total or 0) + int(metric["value"])
        return total

    def read_user_counter_accumulator(
        self, job_id: str, namespace: str, name: str
    ) -> int | None:
        """Return a Beam counter from the accumulators of a job.

        The Beam runner also stores its metrics in a Flink accumulator that
        the JobManager keeps after the job ends, as JSON MonitoringInfos with
        varint payloads. This is how a finished job's counters are read,
        because vertex metrics disappear with the tasks.

        Returns:
          The counter summed over all steps, or None when absent.
        """
        accumulators = self.get(f"/jobs/{job_id}/accumulators")
        total = None
        for accumulator in accumulators["user-task-accumulators"]:
            if accumulator["name"] != _BEAM_METRICS_ACCUMULATOR:
                continue
            infos = json.loads(accumulator["value"])["metrics"]["attempted"]
            for info in infos:
                labels = info.get("labels", {})
                if (
                    info["urn"] == _USER_COUNTER_URN
                    and labels.get("NAMESPACE") == namespace
                    and labels.get("NAME") == name
                ):
                    payload = base64.b64decode(info["payload"])
                    total = (total or 0) + decode_varint(payload)
        return total

    def stop_with_savepoint(self, job_id: str, timeout_sec: float) -> str:
        """Stop a job with a savepoint in the cluster's default directory.

        Returns:
          The savepoint location, a `file:` URI.

        Raises:
          RuntimeError: Flink reported that the savepoint failed.
        """
        trigger = self.post(f"/jobs/{job_id}/stop", {"drain": False})
        status_path = f"/jobs/{job_id}/savepoints/{trigger['request-id']}"

        def savepoint_done():
            status = self.get(status_path)
            return status if status["status"]["id"] == "COMPLETED" else None

        status = wait_until(
            savepoint_done, timeout_sec, f"savepoint of job {job_id}"
        )
        operation = status["operation"]
        if "failure-cause" in operation:
            cause = operation["failure-cause"]
            raise RuntimeError(f"savepoint of job {job_id} failed: {cause}")
        return operation["location"]

    def cancel_job(self, job_id: str) -> None:
        self.patch(f"/jobs/{job_id}?mode=cancel")
