"""Live model refresh: polling the registry and the scoring step's choice.

The scoring step must adopt each newly promoted version, never go back to
an older one, and keep scoring with the previous model when a new one is
corrupt or incompatible.
"""

import pathlib
import pickle

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from models import registry
from pipelines.sources import _LoadPromotedModelDoFn, load_model_or_none
from tests.models.conftest import shift_of, synthetic_bundle, synthetic_rows
from transforms.features import FEATURE_NAMES
from transforms.scoring import ScoreWindows, _ScoreBatchDoFn

_PERIOD_SEC = 60


def _alerting_bundle(version: int):
    """A model that flags every row, so each scored row yields an event."""
    bundle = synthetic_bundle(version, seed=version)
    bundle.threshold = 0.0
    return bundle


def _incompatible_bundle(version: int):
    bundle = _alerting_bundle(version)
    bundle.sklearn_version = "0.24.2"
    return bundle


def _row(event_time_ms: int) -> dict:
    # Heart rate 10 SDs above the training data, so `explain` has a reason.
    rng = np.random.default_rng(event_time_ms)
    features = synthetic_rows(rng, 1, shift_of("hr_mean_bpm", 10.0))[0]
    return {
        "patient_id": "patient-a",
        "window_start": event_time_ms - 300_000,
        "event_time": event_time_ms,
        "features": features,
    }


def _score(dofn, side_input, times=(1000,)):
    batch = [_row(t) for t in times]
    events = [v.value for v in dofn.process(batch, side_input)]
    return [e["model_version"] for e in events]


def _started(dofn):
    dofn.setup()
    return dofn


def test_scoring_adopts_newer_version():
    dofn = _started(_ScoreBatchDoFn())
    assert _score(dofn, _alerting_bundle(1)) == ["1"]
    assert _score(dofn, _alerting_bundle(2)) == ["2"]


def test_scoring_ignores_older_version():
    dofn = _started(_ScoreBatchDoFn())
    assert _score(dofn, _alerting_bundle(3)) == ["3"]
    assert _score(dofn, _alerting_bundle(2)) == ["3"]


def test_scoring_keeps_model_when_side_input_none():
    dofn = _started(_ScoreBatchDoFn())
    assert _score(dofn, None) == []
    assert _score(dofn, _alerting_bundle(1)) == ["1"]
    assert _score(dofn, None) == ["1"]


def test_scoring_rejects_incompatible_model():
    dofn = _started(_ScoreBatchDoFn())
    assert _score(dofn, _alerting_bundle(1)) == ["1"]
    assert _score(dofn, _incompatible_bundle(2)) == ["1"]
    bad_features = _alerting_bundle(3)
    bad_features.feature_names = FEATURE_NAMES[::-1]
    assert _score(dofn, bad_features) == ["1"]
    assert _score(dofn, _alerting_bundle(4)) == ["4"]


def test_scoring_rejects_non_bundle():
    dofn = _started(_ScoreBatchDoFn())
    assert _score(dofn, {"version": 5}) == []


def test_scoring_picks_highest_of_list():
    dofn = _started(_ScoreBatchDoFn())
    offered = [_alerting_bundle(2), None, _alerting_bundle(1)]
    assert _score(dofn, offered) == ["2"]


def test_fresh_instance_keeps_highest_version():
    # Runners may unpickle a fresh DoFn for each bundle.
    unstarted = _ScoreBatchDoFn()
    copy = _started(pickle.loads(pickle.dumps(unstarted)))
    dofn = _started(unstarted)
    assert _score(dofn, _alerting_bundle(3)) == ["3"]
    assert _score(copy, _alerting_bundle(2)) == ["3"]


def test_load_model_or_none_sees_promotion(tmp_path):
    root = str(tmp_path)
    assert load_model_or_none(root) is None
    registry.save(root, synthetic_bundle(0))
    registry.promote(root, 1)
    assert load_model_or_none(root).version == 1
    registry.save(root, synthetic_bundle(0, seed=1))
    registry.promote(root, 2)
    assert load_model_or_none(root).version == 2


def _poll(dofn) -> list:
    return [getattr(m, "version", m) for m in dofn.process(None)]


def test_poll_emits_each_new_version_once(tmp_path):
    root = str(tmp_path)
    dofn = _started(_LoadPromotedModelDoFn(root))
    assert _poll(dofn) == [None]
    assert _poll(dofn) == []
    registry.save(root, synthetic_bundle(0))
    registry.promote(root, 1)
    assert _poll(dofn) == [1]
    assert _poll(dofn) == []
    registry.save(root, synthetic_bundle(0, seed=1))
    registry.promote(root, 2)
    assert _poll(dofn) == [2]


def test_poll_skips_corrupt_promotion(tmp_path):
    root = str(tmp_path)
    dofn = _started(_LoadPromotedModelDoFn(root))
    registry.save(root, synthetic_bundle(0))
    registry.promote(root, 1)
    assert _poll(dofn) == [1]
    registry.save(root, synthetic_bundle(0))
    pathlib.Path(root, "v000002", "model.pkl").write_bytes(b"truncated")
    registry.promote(root, 2)
    assert _poll(dofn) == []
    assert _poll(dofn) == []
    registry.save(root, synthetic_bundle(0, seed=1))
    registry.promote(root, 3)
    assert _poll(dofn) == [3]


def test_poll_without_registry_emits_none_once():
    dofn = _started(_LoadPromotedModelDoFn(""))
    assert _poll(dofn) == [None]
    assert _poll(dofn) == []


def test_scoring_counts_loaded_and_rejected():
    pipeline = beam.Pipeline(runner=FnApiRunner())
    offered = [_alerting_bundle(1), _incompatible_bundle(2)]
    models = beam.pvalue.AsList(
        pipeline | "CreateModels" >> beam.Create(offered)
    )
    events = (
        pipeline
        | "CreateRows" >> beam.Create([_row(1000), _row(2000)])
        | "ScoreWindows" >> ScoreWindows(models)
    )
    versions = events | beam.Map(lambda e: e["model_version"])
    assert_that(versions, equal_to(["1", "1"]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter())["counters"]
    }
    assert counters["models_loaded"] >= 1
    assert counters["models_rejected"] >= 1
    assert counters["rows_scored"] == 2


def _stamped(value, seconds: float):
    return window.TimestampedValue(value, seconds)


def _refresh_stream() -> TestStream:
    """Promote versions 1, 2 and 3, then offer 2 again and a broken 4.

    One model per minute of event time, each followed by two rows of that
    minute. The side input is windowed per minute because the direct
    runner makes a global-window side input available only once its
    watermark reaches the end of time, so it cannot change during a run.
    """
    offered = [
        _alerting_bundle(1),
        _alerting_bundle(2),
        _alerting_bundle(3),
        _alerting_bundle(2),
        _incompatible_bundle(4),
    ]
    stream = TestStream(output_tags={"rows", "models"})
    for minute, model in enumerate(offered):
        start = minute * _PERIOD_SEC
        end = start + _PERIOD_SEC
        stream = (
            stream.add_elements([_stamped(model, start)], tag="models")
            .advance_watermark_to(end, tag="models")
            .add_elements(
                [
                    _stamped(_row((start + 10) * 1000), start + 10),
                    _stamped(_row((start + 20) * 1000), start + 20),
                ],
                tag="rows",
            )
            .advance_watermark_to(end, tag="rows")
        )
    return stream.advance_watermark_to_infinity(
        tag="models"
    ).advance_watermark_to_infinity(tag="rows")


def test_streaming_scores_with_each_promoted_version():
    # NOTE: the rows go to the scoring DoFn in batches of one, without
    # ScoreWindows' GroupIntoBatches. With GroupIntoBatches in front of a
    # windowed side input, the direct runner of Beam 2.62 crashes in
    # executor.py (`_latest_main_input_window` is None for an empty
    # bundle) and the pipeline hangs.
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)

    streams = pipeline | "Stream" >> _refresh_stream()
    per_minute = window.FixedWindows(_PERIOD_SEC)
    models = beam.pvalue.AsSingleton(
        streams["models"] | "WindowModels" >> beam.WindowInto(per_minute)
    )
    events = (
        streams["rows"]
        | "WindowRows" >> beam.WindowInto(per_minute)
        | "BatchOfOne" >> beam.Map(lambda row: [row])
        | "ScoreFeatures" >> beam.ParDo(_ScoreBatchDoFn(), models)
    )

    scored = events | beam.Map(
        lambda e: (e["event_time"] // 1000, e["model_version"])
    )
    assert_that(
        scored,
        equal_to(
            [
                (10, "1"),
                (20, "1"),
                (70, "2"),
                (80, "2"),
                (130, "3"),
                (140, "3"),
                (190, "3"),
                (200, "3"),
                (250, "3"),
                (260, "3"),
            ]
        ),
    )
    pipeline.run().wait_until_finish()
