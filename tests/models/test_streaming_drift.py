"""Streaming drift against the model version in the scoring step's state.

Models and feature rows arrive on one TestStream, as in a streaming run,
and go through ScoreWindowsWithModelStream and ComputeDriftPerWindow on
the BundleBasedDirectRunner.
"""

import json

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from pipelines.vitals_pipeline import build_pipeline
from tests.core.helpers import T0_MS, batch_payload, streaming_pipeline
from tests.models.conftest import shift_of, synthetic_bundle, synthetic_rows
from transforms import features
from transforms.drift import (
    BundleBinCounts,
    ComputeDriftPerWindow,
    DriftReferences,
)
from transforms.keyed_scoring import ScoreWindowsWithModelStream

_WINDOW_SEC = 600
_PERIOD_SEC = 60
_ROWS_PER_MINUTE = 40
_PATIENTS = 8
_HR_SHIFTED = shift_of("hr_mean_bpm", 3.0)


def _row(features_row, end_sec: int, patient: int) -> dict:
    """A feature row of a window ending at `end_sec`, as the pipeline's."""
    return {
        "patient_id": f"patient-{patient}",
        "window_start": (end_sec - 300) * 1000,
        "window_end": end_sec * 1000,
        "event_time": end_sec * 1000 - 1,
        "readings": 300,
        "features": features_row,
        "baseline": features.no_baseline(),
    }


def _rows_of_minute(rng, minute: int, shift) -> list:
    """Rows of the sliding windows that end after `minute`, stamped there.

    Like ComputeTrendFeatures' output, each row's timestamp is the end of
    its window minus one millisecond.
    """
    end_sec = (minute + 1) * _PERIOD_SEC
    values = synthetic_rows(rng, _ROWS_PER_MINUTE, shift)
    return [
        window.TimestampedValue(
            ("row", _row(value, end_sec, i % _PATIENTS)), end_sec - 0.001
        )
        for i, value in enumerate(values)
    ]


def _stream(minutes: list) -> TestStream:
    """Build a stream from (model or None, shift) per minute.

    A model is emitted at the start of its minute, before that minute's
    rows. Then the watermark passes the end of the minute.
    """
    rng = np.random.default_rng(1)
    stream = TestStream().advance_watermark_to(0)
    for minute, (model, shift) in enumerate(minutes):
        start = minute * _PERIOD_SEC
        if model is not None:
            stream = stream.add_elements(
                [window.TimestampedValue(("model", model), start)]
            ).advance_watermark_to(start + 1)
        stream = stream.add_elements(
            _rows_of_minute(rng, minute, shift)
        ).advance_watermark_to(start + _PERIOD_SEC)
    return stream.advance_watermark_to_infinity()


def _minutes(model, shift, count: int = _WINDOW_SEC // _PERIOD_SEC) -> list:
    """One drift window of minutes: `model` first, then no new model."""
    return [(model, shift)] + [(None, shift)] * (count - 1)


def _run(minutes: list, check_events) -> None:
    """Score and measure drift over the stream.

    `check_events` asserts the drift events inside the pipeline, because
    the direct runner unpickles a copy of every DoFn.

    NOTE: these streaming runs check no metric values, because the
    BundleBasedDirectRunner of Beam 2.62 keeps only part of a streaming
    step's metric updates, or none. The PSI metrics are checked on bounded
    runs in test_drift.py, which go through the same ComputeDriftPerWindow.
    """
    pipeline = streaming_pipeline()
    tagged = pipeline | "Stream" >> _stream(minutes)
    models = tagged | "Models" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "model" else []
    )
    rows = tagged | "Rows" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "row" else []
    )
    scored = rows | "ScoreWindows" >> ScoreWindowsWithModelStream(
        models, shards=2
    )
    drifted = scored.drift_counts | "MonitorDrift" >> ComputeDriftPerWindow(
        window_size_sec=_WINDOW_SEC
    )
    assert_that(drifted, check_events)
    pipeline.run().wait_until_finish()


def _summary(events) -> list:
    """(window index, model version, feature, rows) of each drift event."""
    return sorted(
        (
            e["window_start"] // (_WINDOW_SEC * 1000),
            e["model_version"],
            e["feature"],
            e["rows"],
        )
        for e in events
    )


def _expect_no_events(events):
    assert list(events) == [], _summary(events)


def _expect_rising_hr_drift(events):
    events = list(events)
    assert {e["feature"] for e in events} == {"hr_mean_bpm"}, _summary(events)
    assert {e["kind"] for e in events} == {"feature_drift"}
    assert {e["model_version"] for e in events} == {"1"}
    psi = {e["window_start"] // 1000: e["psi"] for e in events}
    assert sorted(psi) == [1200, 1800], psi
    assert psi[1200] < psi[1800], psi
    for event in events:
        assert event["window_end"] - event["window_start"] == 600_000
        assert event["rows"] == 400
        assert event["threshold"] == 0.25


def _expect_drift_of_each_version(events):
    # Version 1 learnt unshifted rows and scores shifted ones in window 0.
    # Version 2 learnt shifted rows, so it is flat on them in window 1 and
    # drifts when the stream returns to normal in window 2.
    assert _summary(events) == [
        (0, "1", "hr_mean_bpm", 400),
        (2, "2", "hr_mean_bpm", 400),
    ]


def _expect_versions_apart_in_window(events):
    # Version 2 arrives after five minutes. Each version's PSI covers only
    # the rows it scored.
    assert _summary(events) == [(0, "1", "hr_mean_bpm", 200)]


def test_streaming_drift_flat_on_unshifted():
    v1 = synthetic_bundle(1)
    minutes = _minutes(v1, None) + _minutes(None, None) * 2
    _run(minutes, _expect_no_events)


def test_streaming_drift_rises_on_shift():
    v1 = synthetic_bundle(1)
    minutes = _minutes(v1, None)
    for sds in (0.2, 1.5, 3.0):
        minutes += _minutes(None, shift_of("hr_mean_bpm", sds))
    _run(minutes, _expect_rising_hr_drift)


def test_streaming_drift_follows_model_version():
    v1 = synthetic_bundle(1)
    v2 = synthetic_bundle(2, seed=2, shift=_HR_SHIFTED)
    minutes = (
        _minutes(v1, _HR_SHIFTED)
        + _minutes(v2, _HR_SHIFTED)
        + _minutes(None, None)
    )
    _run(minutes, _expect_drift_of_each_version)


def test_streaming_drift_keeps_versions_apart():
    v1 = synthetic_bundle(1)
    v2 = synthetic_bundle(2, seed=2, shift=_HR_SHIFTED)
    minutes = _minutes(v1, _HR_SHIFTED, 5) + _minutes(v2, _HR_SHIFTED, 5)
    _run(minutes, _expect_versions_apart_in_window)


def test_streaming_drift_skips_rows_without_model():
    v1 = synthetic_bundle(1)
    minutes = _minutes(None, _HR_SHIFTED) + _minutes(v1, None)
    _run(minutes, _expect_no_events)


def test_keyed_drift_counts_rows_without_reference():
    # Bounded, on the FnApiRunner, because the streaming direct runner
    # drops metric updates. The count does not depend on whether the model
    # reaches a shard before or after the rows.
    unmeasured = synthetic_bundle(1)
    unmeasured.metadata.pop("feature_statistics")
    rows = [
        _row(value, 60, i % _PATIENTS)
        for i, value in enumerate(synthetic_rows(np.random.default_rng(0), 30))
    ]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    models = pipeline | "CreateModels" >> beam.Create([unmeasured])
    scored = (
        pipeline
        | "CreateRows" >> beam.Create(rows)
        | "ScoreWindows" >> ScoreWindowsWithModelStream(models, shards=2)
    )
    assert_that(scored.drift_counts, equal_to([]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(
        MetricsFilter().with_name("drift_rows_without_reference")
    )["counters"]
    assert [c.committed for c in counters] == [30]


def test_bundle_bin_counts_groups_rows():
    bundle = synthetic_bundle(1)
    rows = synthetic_rows(np.random.default_rng(0), 3)
    bin_counts = BundleBinCounts(DriftReferences())
    assert bin_counts.add(bundle, rows[0], 60)
    assert bin_counts.add(bundle, rows[1], 60)
    assert bin_counts.add(bundle, rows[2], 120)
    drained = list(bin_counts.drain())
    assert [v.timestamp.micros for v in drained] == [60_000_000, 120_000_000]
    assert [v.value[0] for v in drained] == [1, 1]
    assert [v.value[1]["rows"] for v in drained] == [2, 1]
    assert list(bin_counts.drain()) == []


def test_bundle_bin_counts_needs_statistics():
    bundle = synthetic_bundle(1)
    bundle.metadata.pop("feature_statistics")
    row = synthetic_rows(np.random.default_rng(0), 1)[0]
    bin_counts = BundleBinCounts(DriftReferences())
    assert not bin_counts.add(None, row, 60)
    assert not bin_counts.add(bundle, row, 60)
    assert list(bin_counts.drain()) == []


def _pipeline_stream(model, minutes: int, patients: int) -> TestStream:
    """A model at the start, then one batch per patient and minute."""
    stream = (
        TestStream()
        .advance_watermark_to(T0_MS / 1000)
        .add_elements([window.TimestampedValue(("model", model), T0_MS / 1000)])
        .advance_watermark_to(T0_MS / 1000 + 1)
    )
    for minute in range(minutes):
        start = T0_MS / 1000 + minute * _PERIOD_SEC
        payloads = [
            window.TimestampedValue(
                ("payload", batch_payload(f"p{n}", minute, heart_rate=130.0)),
                start,
            )
            for n in range(patients)
        ]
        stream = stream.add_elements(payloads).advance_watermark_to(
            start + _PERIOD_SEC
        )
    return stream.advance_watermark_to_infinity()


def _expect_pipeline_drift(events):
    events = list(events)
    assert "hr_mean_bpm" in {e["feature"] for e in events}, events
    assert {e["model_version"] for e in events} == {"1"}
    assert T0_MS in {e["window_start"] for e in events}
    assert {e["window_end"] - e["window_start"] for e in events} == {600_000}


def test_pipeline_emits_streaming_drift(tmp_path):
    # Heart rate 130 bpm against a model trained around 75 bpm.
    pipeline = streaming_pipeline(
        "--drift_min_rows=5", f"--output_dir={tmp_path}"
    )
    tagged = pipeline | "Stream" >> _pipeline_stream(
        synthetic_bundle(1), minutes=12, patients=4
    )
    models = tagged | "Models" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "model" else []
    )
    payloads = tagged | "Payloads" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "payload" else []
    )
    outputs = build_pipeline(
        pipeline, pipeline.options, payloads, model_updates=models
    )
    assert_that(outputs["drift_events"], _expect_pipeline_drift)
    pipeline.run().wait_until_finish()

    written = []
    for path in tmp_path.glob("drift_events*.jsonl"):
        written += [json.loads(line) for line in path.read_text().splitlines()]
    assert written, "no drift events written"
    assert {e["kind"] for e in written} == {"feature_drift"}
