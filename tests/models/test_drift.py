"""PSI of feature rows, and the streaming drift monitor."""

import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms import window

from models import drift
from tests.models.conftest import shift_of, synthetic_bundle, synthetic_rows
from transforms.drift import DriftReference, MonitorDrift
from transforms.features import FEATURE_NAMES

_WINDOW_SEC = 600
_ROWS_PER_WINDOW = 400


def test_psi_zero_for_identical():
    assert drift.population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_psi_grows_with_shift():
    rng = np.random.default_rng(0)
    histogram = drift.reference_histogram(rng.normal(size=5000))
    psi = [
        drift.feature_psi(
            rng.normal(loc=shift, size=(2000, 1)), {"x": histogram}
        )["x"]
        for shift in (0.0, 0.5, 1.0, 2.0)
    ]
    assert psi[0] < 0.02
    assert psi == sorted(psi)
    assert psi[-1] > drift.DRIFT_PSI_THRESHOLD


def test_reference_histogram_counts_missing():
    values = np.array([1.0, 2.0, np.nan, np.nan])
    histogram = drift.reference_histogram(values)
    assert histogram["missing"] == 0.5
    assert sum(histogram["proportions"]) == pytest.approx(0.5)


def test_reference_histogram_of_constant_feature():
    histogram = drift.reference_histogram(np.full(100, 3.0))
    assert histogram["edges"] == [3.0]
    psi = drift.feature_psi(np.full((50, 1), 3.0), {"x": histogram})["x"]
    assert psi == pytest.approx(0.0)


def test_psi_detects_newly_missing_values():
    rng = np.random.default_rng(0)
    histogram = drift.reference_histogram(rng.normal(size=1000))
    live = np.full((100, 1), np.nan)
    assert drift.feature_psi(live, {"x": histogram})["x"] > 1.0


def test_feature_psi_of_no_rows_is_nan():
    histogram = drift.reference_histogram(np.arange(10.0))
    assert math.isnan(
        drift.feature_psi(np.empty((0, 1)), {"x": histogram})["x"]
    )


def test_count_bins_matches_bin_counts():
    rng = np.random.default_rng(3)
    histograms = {
        "normal": drift.reference_histogram(rng.normal(size=500)),
        "constant": drift.reference_histogram(np.full(50, 3.0)),
        "never_present": drift.reference_histogram(np.full(50, np.nan)),
    }
    reference = DriftReference.from_histograms(histograms)
    edges = histograms["normal"]["edges"]
    live = rng.normal(size=(40, 3))
    live[:4, 0] = [edges[0], edges[-1], np.inf, -np.inf]
    live[4:8, :] = np.nan
    live[8:12, 1] = 3.0
    counted = reference.count_bins(live)
    assert counted["rows"] == 40
    for i, histogram in enumerate(histograms.values()):
        bins, missing = drift.bin_counts(live[:, i], histogram["edges"])
        line = counted["counts"][i]
        assert line[: len(bins)].tolist() == bins.tolist(), i
        assert line[len(bins) : -1].sum() == 0, i
        assert line[-1] == missing, i


def _rows_of_window(rng, index: int, shift_sds: float) -> list:
    """Feature rows stamped inside fixed window `index`."""
    start_sec = index * _WINDOW_SEC
    shift = shift_of("hr_mean_bpm", shift_sds)
    rows = synthetic_rows(rng, _ROWS_PER_WINDOW, shift)
    stamps = start_sec + np.linspace(1, _WINDOW_SEC - 1, _ROWS_PER_WINDOW)
    return [
        window.TimestampedValue(
            {"event_time": int(t * 1000), "features": row}, float(t)
        )
        for t, row in zip(stamps, rows, strict=True)
    ]


def _streaming_pipeline() -> beam.Pipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)


def _stream_with_model(windows: list[list]) -> TestStream:
    """Emit the model and close its side input, then the rows per window."""
    stream = (
        TestStream(output_tags={"rows", "model"})
        .add_elements([synthetic_bundle(1)], tag="model")
        .advance_watermark_to_infinity(tag="model")
    )
    for index, rows in enumerate(windows):
        stream = stream.add_elements(rows, tag="rows")
        stream = stream.advance_watermark_to(
            (index + 1) * _WINDOW_SEC, tag="rows"
        )
    return stream.advance_watermark_to_infinity(tag="rows")


def _run_streaming(windows: list[list], check_events) -> None:
    """Run MonitorDrift on a TestStream; `check_events` asserts the output.

    The check runs inside the pipeline because the direct runner unpickles
    a copy of every DoFn, so a list filled there stays empty here.
    """
    pipeline = _streaming_pipeline()
    streams = pipeline | "Stream" >> _stream_with_model(windows)
    model = beam.pvalue.AsSingleton(streams["model"])
    drifted = streams["rows"] | "MonitorDrift" >> MonitorDrift(
        model, window_size_sec=_WINDOW_SEC
    )
    assert_that(drifted, check_events)
    pipeline.run().wait_until_finish()


def _run_bounded(windows: list[list]):
    """Run MonitorDrift on bounded rows; return its metrics.

    NOTE: metrics are read from a bounded FnApiRunner run because the
    streaming BundleBasedDirectRunner of Beam 2.62 kept the updates of only
    one of three TestStream bundles (a counter of 1200 rows read 400).
    """
    pipeline = beam.Pipeline(runner=FnApiRunner())
    model = beam.pvalue.AsSingleton(
        pipeline | "CreateModel" >> beam.Create([synthetic_bundle(1)])
    )
    rows = [row for window_rows in windows for row in window_rows]
    _ = (
        pipeline
        | "CreateRows" >> beam.Create(rows)
        | "MonitorDrift" >> MonitorDrift(model, window_size_sec=_WINDOW_SEC)
    )
    result = pipeline.run()
    result.wait_until_finish()
    return result.metrics()


def _shifted_windows(shift_per_window: list[float]) -> list[list]:
    rng = np.random.default_rng(1)
    return [
        _rows_of_window(rng, index, shift)
        for index, shift in enumerate(shift_per_window)
    ]


def _psi_metric(metrics, feature: str):
    query = metrics.query(MetricsFilter().with_name(f"drift_psi_{feature}"))
    return query["distributions"][0].committed, query["gauges"][0].committed


def _expect_no_events(events):
    assert list(events) == [], events


def _expect_rising_hr_drift(events):
    events = list(events)
    assert {e["feature"] for e in events} == {"hr_mean_bpm"}, events
    assert all(e["kind"] == "feature_drift" for e in events)
    assert all(e["model_version"] == "1" for e in events)
    psi = {e["window_start"]: e["psi"] for e in events}
    assert sorted(psi) == [1_200_000, 1_800_000], psi
    assert psi[1_200_000] < psi[1_800_000], psi


def test_monitor_drift_flat_on_unshifted():
    _run_streaming(_shifted_windows([0.0, 0.0, 0.0]), _expect_no_events)


def test_monitor_drift_rises_on_shift():
    windows = _shifted_windows([0.0, 0.2, 1.5, 3.0])
    _run_streaming(windows, _expect_rising_hr_drift)


def test_drift_metrics_flat_on_unshifted():
    metrics = _run_bounded(_shifted_windows([0.0, 0.0, 0.0]))
    for feature in FEATURE_NAMES:
        distribution, _ = _psi_metric(metrics, feature)
        assert distribution.count == 3, feature
        # Thousandths of PSI. Samples of 400 and 500 rows give a PSI of
        # about 9 * (1/400 + 1/500) = 0.04 from sampling alone.
        assert distribution.max < 250, feature
        assert distribution.mean < 100, feature


def test_drift_metrics_rise_on_shift():
    metrics = _run_bounded(_shifted_windows([0.0, 0.2, 1.5, 3.0]))
    distribution, gauge = _psi_metric(metrics, "hr_mean_bpm")
    assert distribution.count == 4
    assert distribution.min < 100
    assert distribution.max > 1000
    assert gauge.value > 250
    quiet, _ = _psi_metric(metrics, "spo2_mean_pct")
    assert quiet.max < 100


def test_monitor_drift_skips_small_windows():
    rows = _rows_of_window(np.random.default_rng(2), 0, 0.0)[:10]
    metrics = _run_bounded([rows])
    small = metrics.query(MetricsFilter().with_name("drift_windows_too_small"))[
        "counters"
    ]
    assert small[0].committed == 1
    psi = metrics.query(MetricsFilter().with_name("drift_psi_hr_mean_bpm"))
    assert psi["distributions"] == []
