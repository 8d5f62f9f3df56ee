"""Run the vitals pipeline on bounded input as a Flink batch job.

A bounded run (a backfill, or the throughput benchmark) becomes a Flink
batch job, whose shuffles need more network buffers than streaming jobs.
The test runs the same payloads on the FnApiRunner and on the cluster
and compares what each counted and the alerts each wrote.
"""

import json
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineState

from bench import common
from pipelines import summary
from pipelines.vitals_pipeline import build_pipeline

pytestmark = [pytest.mark.flink, pytest.mark.slow]

# 5 patients x 6 min give 2 full 5-minute windows per patient.
_PATIENTS = 5
_SECONDS = 360
_WAIT_TIMEOUT_SEC = 300
# Bounded runs decide on alerts in event-time order, so the alert counters
# must match too.
_COMPARED = (
    "payloads_in",
    "readings_in",
    "readings_valid",
    "readings_duplicate",
    "readings_on_time",
    "feature_rows",
    "rows_scored",
    "alerts_info",
    "alerts_minor",
    "alerts_severe",
    "alerts_suppressed",
)


def _run(payloads, registry_root, output_dir, runner_args=None):
    options = PipelineOptions(
        [
            *(runner_args or []),
            f"--model_registry={registry_root}",
            f"--output_dir={output_dir}",
        ]
    )
    if runner_args:
        pipeline = beam.Pipeline(options=options)
    else:
        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    source = pipeline | "CreatePayloads" >> beam.Create(payloads)
    build_pipeline(pipeline, options, payloads=source)
    result = pipeline.run()
    result.wait_until_finish(duration=_WAIT_TIMEOUT_SEC * 1000)
    return result


@pytest.fixture(scope="module")
def runs(flink_cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("bounded")
    registry_root = common.train_registry(work)
    payloads = list(common.simulation(_PATIENTS, _SECONDS, 60).payloads())
    local = _run(payloads, registry_root, work / "local")
    job_name = f"vitalwatch-bounded-{uuid.uuid4().hex[:8]}"
    on_flink = _run(
        payloads,
        registry_root,
        work / "flink",
        flink_cluster.pipeline_args(job_name),
    )
    job = flink_cluster.rest.find_job(job_name)
    return local, on_flink, job, work


def test_bounded_job_finishes_on_flink(runs):
    _, on_flink, job, _ = runs
    assert on_flink.state == PipelineState.DONE
    assert job is not None
    assert job["state"] == "FINISHED"


def test_bounded_counters_match_fnapi_runner(runs):
    local, on_flink, _, _ = runs
    local_counters = summary.counters(local)
    flink_counters = summary.counters(on_flink)
    assert local_counters["feature_rows"] > 0
    for name in _COMPARED:
        assert flink_counters.get(name) == local_counters.get(name), name


def _alerts(output_dir):
    return sorted(
        (alert["alert_id"], alert["suppressed_repeats"])
        for path in output_dir.glob("alerts*.jsonl")
        for alert in map(json.loads, path.read_text().splitlines())
    )


def test_bounded_alerts_match_fnapi_runner(runs):
    *_, work = runs
    local_alerts = _alerts(work / "local")
    assert local_alerts
    assert _alerts(work / "flink") == local_alerts
