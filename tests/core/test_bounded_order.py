"""A bounded run's output must not depend on the order of its input.

Runners deliver a bounded input in an order of their own: the Flink batch
job and the FnApiRunner differ, and a reshuffle reorders it again. The
simulated input carries the delivery faults of real gateways (duplicates,
late and out-of-order batches, a timestamp a day ahead), so the fast
checks, the gap notices and repeat suppression all see different
sequences when the order changes.
"""

import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from bench import common
from pipelines import summary
from pipelines.vitals_pipeline import build_pipeline
from tests.core.helpers import batch_pipeline
from transforms.patient_state import block_order
from transforms.readings import ReadingBlock

_PATIENTS = 6
_SECONDS = 600


def _run(payloads, registry_root, output_dir):
    flags = [f"--model_registry={registry_root}", f"--output_dir={output_dir}"]
    pipeline = batch_pipeline(*flags)
    source = pipeline | beam.Create(payloads, reshuffle=False)
    build_pipeline(pipeline, PipelineOptions(flags), payloads=source)
    result = pipeline.run()
    result.wait_until_finish()
    alerts = sorted(
        json.dumps(json.loads(line), sort_keys=True)
        for path in output_dir.glob("alerts*.jsonl")
        for line in path.read_text().splitlines()
    )
    return alerts, summary.counters(result)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("order")
    registry_root = common.train_registry(work)
    payloads = list(common.simulation(_PATIENTS, _SECONDS, 60).payloads())
    forward = _run(payloads, registry_root, work / "forward")
    backward = _run(payloads[::-1], registry_root, work / "backward")
    return forward, backward


def test_alerts_ignore_input_order(runs):
    (forward, _), (backward, _) = runs
    assert forward
    assert backward == forward


def test_counters_ignore_input_order(runs):
    (_, forward), (_, backward) = runs
    assert forward["readings_on_time"] > 0
    assert backward == forward


def _block(first_ms: int, device="d1", first_sequence=0, size=3):
    return ReadingBlock(
        "p1",
        device,
        first_sequence + np.arange(size),
        first_ms + 1000 * np.arange(size),
        {},
    )


def test_block_order_by_earliest_time():
    late = _block(10_000, first_sequence=10)
    early = _block(0)
    ordered = sorted([late, early], key=block_order)
    assert ordered[0] is early
    assert ordered[1] is late


def test_block_order_breaks_ties_by_device():
    other = _block(0, device="d2")
    first = _block(0, device="d1")
    ordered = sorted([other, first], key=block_order)
    assert ordered[0] is first
    assert ordered[1] is other
