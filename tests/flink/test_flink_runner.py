"""Run Beam Python pipelines on the local Flink cluster.

These tests check that the cluster from scripts/flink.sh and the job server
from scripts/flink_job_server.sh work together. A batch job finishes,
writes its output and reports a Beam counter. A streaming job completes
checkpoints and stops with a savepoint.
"""

import contextlib
import shutil
import urllib.parse
import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from tests.flink.flink_rest import wait_until

pytestmark = [pytest.mark.flink, pytest.mark.slow]

_COUNTER_NAMESPACE = "vitalwatch_test"
_COUNTER_NAME = "elements_seen"
# Submitting a job uploads the job server's jars (about 150 MB) to the
# cluster and starts an SDK harness. That took up to 40 s on 2 cores.
_JOB_START_TIMEOUT_SEC = 180
_CHECKPOINT_INTERVAL_MSEC = 2000
_CHECKPOINTS_EXPECTED = 2
_WAIT_TIMEOUT_SEC = 120


class _CountElementsDoFn(beam.DoFn):
    def __init__(self):
        self._elements_seen = Metrics.counter(_COUNTER_NAMESPACE, _COUNTER_NAME)

    def process(self, element):
        self._elements_seen.inc()
        yield element


def _unique_job_name(kind: str) -> str:
    return f"vitalwatch-flink-{kind}-{uuid.uuid4().hex[:8]}"


def _run_batch_pipeline(flink_cluster, job_name: str, output: Path):
    options = PipelineOptions(flink_cluster.pipeline_args(job_name))
    pipeline = beam.Pipeline(options=options)
    (
        pipeline
        | "CreateNumbers" >> beam.Create([1, 2, 3])
        | "CountNumbers" >> beam.ParDo(_CountElementsDoFn())
        | "SquareNumbers" >> beam.Map(lambda n: str(n * n))
        | "WriteSquares"
        >> beam.io.WriteToText(str(output), shard_name_template="")
    )
    result = pipeline.run()
    result.wait_until_finish(duration=_WAIT_TIMEOUT_SEC * 1000)
    return result


def test_batch_job_finishes(flink_cluster, tmp_path):
    job_name = _unique_job_name("batch")
    output = tmp_path / "squares.txt"

    result = _run_batch_pipeline(flink_cluster, job_name, output)

    assert result.state == PipelineState.DONE
    assert sorted(output.read_text().split()) == ["1", "4", "9"]
    job = flink_cluster.rest.find_job(job_name)
    assert job is not None, f"job {job_name!r} not in /jobs/overview"
    assert job["state"] == "FINISHED"
    counter = flink_cluster.rest.read_user_counter_accumulator(
        job["jid"], _COUNTER_NAMESPACE, _COUNTER_NAME
    )
    assert counter == 3


def _start_streaming_pipeline(flink_cluster, job_name: str):
    args = flink_cluster.pipeline_args(job_name) + [
        "--streaming",
        f"--checkpointing_interval={_CHECKPOINT_INTERVAL_MSEC}",
    ]
    pipeline = beam.Pipeline(options=PipelineOptions(args))
    (
        pipeline
        | "EmitTicks" >> PeriodicImpulse(fire_interval=0.5)
        | "CountTicks" >> beam.ParDo(_CountElementsDoFn())
    )
    return pipeline.run()


def _savepoint_dir(location: str) -> Path:
    return Path(urllib.parse.urlparse(location).path)


@contextlib.contextmanager
def _running_streaming_job(flink_cluster, kind: str):
    """Start the streaming pipeline and yield its result and Flink job id.

    The job is cancelled on exit unless the test stopped it, so that a
    failed test leaves no job running on the shared cluster.
    """
    rest = flink_cluster.rest
    job_name = _unique_job_name(kind)
    result = _start_streaming_pipeline(flink_cluster, job_name)
    try:
        job = rest.wait_for_job_state(
            job_name, {"RUNNING"}, _JOB_START_TIMEOUT_SEC
        )
        rest.wait_for_running_tasks(job["jid"], _JOB_START_TIMEOUT_SEC)
        yield result, job["jid"]
    finally:
        _cancel_if_running(rest, job_name)


def test_streaming_job_checkpoints_and_stops(flink_cluster):
    rest = flink_cluster.rest
    with _running_streaming_job(flink_cluster, "streaming") as (
        result,
        job_id,
    ):
        counts = rest.wait_for_checkpoints(
            job_id, _CHECKPOINTS_EXPECTED, _WAIT_TIMEOUT_SEC
        )
        assert counts["completed"] >= _CHECKPOINTS_EXPECTED

        location = rest.stop_with_savepoint(job_id, _WAIT_TIMEOUT_SEC)
        savepoint = _savepoint_dir(location)
        assert (savepoint / "_metadata").is_file(), location
        shutil.rmtree(savepoint)

        state = result.wait_until_finish(duration=_WAIT_TIMEOUT_SEC * 1000)
        assert state == PipelineState.DONE
        assert rest.get(f"/jobs/{job_id}")["state"] == "FINISHED"


def test_streaming_counter_in_vertex_metrics(flink_cluster):
    rest = flink_cluster.rest
    with _running_streaming_job(flink_cluster, "metrics") as (_, job_id):
        ticks = wait_until(
            lambda: rest.read_user_counter_metric(
                job_id, _COUNTER_NAMESPACE, _COUNTER_NAME
            ),
            _WAIT_TIMEOUT_SEC,
            f"counter {_COUNTER_NAMESPACE}_{_COUNTER_NAME} in vertex metrics",
        )
        assert ticks > 0


def _cancel_if_running(rest, job_name: str) -> None:
    """Cancel a job that a failed test left running on the shared cluster."""
    job = rest.find_job(job_name)
    if job and job["state"] not in {"FINISHED", "CANCELED", "FAILED"}:
        rest.cancel_job(job["jid"])
