"""Streaming scoring with models promoted during the run."""

import dataclasses

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from models import train
from tests.core.helpers import T0_MS, streaming_pipeline
from transforms import features
from transforms.keyed_scoring import ScoreWindowsWithModelStream

_HR_MEAN = features.FEATURE_NAMES.index("hr_mean_bpm")


def _model(version: int, seed: int):
    rng = np.random.default_rng(seed)
    normal = rng.normal(1.0, 0.05, size=(400, len(features.FEATURE_NAMES)))
    normal[:, _HR_MEAN] = rng.normal(70, 3, size=400)
    bundle = train.fit(normal, seed=seed, n_estimators=50)
    bundle.version = version
    return bundle


def _row(phase: int, patient: str) -> dict:
    # Far from the training rows on every feature, so every model flags it.
    values = np.full(len(features.FEATURE_NAMES), 5.0)
    values[_HR_MEAN] = 190.0
    return {
        "patient_id": patient,
        "window_start": phase,
        "window_end": phase,
        "event_time": T0_MS + phase * 60_000,
        "readings": 300,
        "features": values,
        "baseline": features.no_baseline(),
    }


def _at(phase: float) -> float:
    return T0_MS / 1000 + phase * 60


def test_versions_score_in_promotion_order():
    v1, v2, v3 = _model(1, 1), _model(2, 2), _model(3, 3)
    stale = dataclasses.replace(_model(2, 9), version=2)
    broken = dataclasses.replace(v3, version=4, feature_names=("other",))
    stream = TestStream().advance_watermark_to(_at(0))
    phases = [(1, v1), (2, v2), (3, v3), (4, stale), (5, broken)]
    for phase, model in phases:
        stream = (
            stream.add_elements(
                [beam.window.TimestampedValue(("model", model), _at(phase))]
            )
            .advance_watermark_to(_at(phase + 0.1))
            .add_elements(
                [
                    beam.window.TimestampedValue(
                        ("row", _row(phase, f"p{n}")), _at(phase + 0.2)
                    )
                    for n in range(6)
                ]
            )
            .advance_watermark_to(_at(phase + 0.5))
        )
    stream = stream.advance_watermark_to_infinity()
    pipeline = streaming_pipeline()
    tagged = pipeline | stream
    model_updates = tagged | "Models" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "model" else []
    )
    feature_rows = tagged | "Rows" >> beam.FlatMap(
        lambda kv: [kv[1]] if kv[0] == "row" else []
    )
    outputs = feature_rows | ScoreWindowsWithModelStream(
        model_updates, shards=2
    )
    events = outputs.events
    scored = events | beam.Map(
        lambda e: ((e["window_start"]), e["model_version"])
    )
    expected = [(1, "1")] * 6 + [(2, "2")] * 6
    expected += [(phase, "3") for phase in (3, 4, 5) for _ in range(6)]
    assert_that(scored, equal_to(expected))
    pipeline.run().wait_until_finish()
