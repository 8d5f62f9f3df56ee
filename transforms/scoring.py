"""Batched Isolation Forest scoring of window features, with explanations.

Rows are batched in the global window, where rows of all patients and
windows can share a batch, and each batch costs one `score_samples` call.
The batch sizes really received are recorded in the
`score_batch_size` distribution, because batches of one element make
scoring dominate the pipeline's cost.

The model arrives as a side input: a `ModelBundle`, or None while no model
is promoted, in which case rows are counted and not scored. A streaming
side input changes while the pipeline runs. The scoring step adopts a
newly offered model only when its version is higher than the one it
scores with and the model can serve (`models.bundle.servability_problems`).
Older versions are ignored. A model that cannot serve is counted in
`models_rejected` and logged, and the previous model keeps scoring.
"""

import collections.abc
import logging
import math
import threading
import time
import uuid
import zlib
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import Timestamp

from models.bundle import servability_problems
from transforms import features

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = "vitalwatch"

# A feature counts as a reason when it is this many robust standard
# deviations from its reference.
_REASON_Z = 2.5
# An anomaly becomes MINOR when its strongest reason reaches this.
_MINOR_Z = 4.0
_MAX_REASONS = 3
# Below this share of clean readings, a window reports poor signal only.
_MIN_GOOD_FRACTION = 0.5

_BASELINE_FEATURES = {
    "hr_baseline_z": "hr_mean_bpm",
    "spo2_baseline_z": "spo2_mean_pct",
    "rmssd_baseline_z": "rmssd_mean_ms",
}
_INDEX = {name: i for i, name in enumerate(features.FEATURE_NAMES)}


def _reference_z(bundle, row: np.ndarray) -> np.ndarray:
    """Deviation per feature: patient-baseline z where known, else training."""
    z = bundle.deviations(row)
    for name in _BASELINE_FEATURES:
        i = _INDEX[name]
        z[i] = row[i]
    return np.nan_to_num(z, nan=0.0)


def _kind(name: str, z: float) -> str:
    if name.startswith(("rmssd", "rr_")):
        return "irregular_rhythm"
    if name.startswith("spo2"):
        return "desaturation_trend" if z < 0 else "anomaly"
    if name.startswith("hr_pulse"):
        return "signal_disagreement"
    if name.startswith("hr"):
        return "heart_rate_high" if z > 0 else "heart_rate_low"
    return "anomaly"


def _reason(bundle, row, z, i) -> dict:
    name = features.FEATURE_NAMES[i]
    baseline = None
    if name in _BASELINE_FEATURES:
        shown = _BASELINE_FEATURES[name]
        value = row[_INDEX[shown]]
        text = (
            f"{shown} {value:.1f} is {z[i]:+.1f} robust SD from this "
            "patient's baseline"
        )
    else:
        value = row[i]
        baseline = float(bundle.medians[i])
        text = (
            f"{name} {value:.2f} is {z[i]:+.1f} robust SD from the "
            f"population median {baseline:.2f}"
        )
    return {
        "feature": name,
        "value": float(value) if not math.isnan(value) else 0.0,
        "baseline": baseline,
        "deviation": float(z[i]),
        "text": text,
    }


def explain(bundle, row: np.ndarray, score: float, meta: dict) -> dict | None:
    """Turn an anomalous row into an event; None if no feature deviates.

    Args:
        bundle: The model that scored the row.
        row: Feature row in FEATURE_NAMES order.
        score: Its anomaly score.
        meta: The row's patient_id, window_start and event_time.
    """
    z = _reference_z(bundle, row)
    order = np.argsort(-np.abs(z))
    top = [i for i in order[:_MAX_REASONS] if abs(z[i]) >= _REASON_Z]
    if not top:
        return None
    good = row[_INDEX["good_quality_fraction"]]
    strongest = abs(z[top[0]])
    if not math.isnan(good) and good < _MIN_GOOD_FRACTION:
        kind, tier = "poor_signal", "INFO"
    else:
        kind = _kind(features.FEATURE_NAMES[top[0]], z[top[0]])
        tier = "MINOR" if strongest >= _MINOR_Z else "INFO"
    return {
        "patient_id": meta["patient_id"],
        "kind": kind,
        "tier": tier,
        "event_time": meta["event_time"],
        "window_start": meta["window_start"],
        "anomaly_score": float(score),
        "model_version": str(bundle.version),
        "reasons": [_reason(bundle, row, z, i) for i in top],
    }


class _LatestModel:
    """The model a scoring step scores with, and the versions it rejected."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bundle = None
        self.rejected = set()


# Latest model per scoring step, shared by the step's DoFn instances in one
# process. Runners may create a DoFn instance per bundle (the direct runner
# unpickles a fresh one for every bundle), and a fresh instance must not
# fall back to an older version.
_LATEST_MODELS: dict[str, _LatestModel] = {}
_LATEST_MODELS_LOCK = threading.Lock()


def _latest_model(token: str) -> _LatestModel:
    with _LATEST_MODELS_LOCK:
        return _LATEST_MODELS.setdefault(token, _LatestModel())


def _offered(side_input) -> list:
    """Candidate models of a side input value, highest version last.

    Accepts a single model or None (an `AsSingleton` view), or an iterable
    of them (`AsIter` or `AsList`, for runners that keep every pane of a
    side input).
    """
    if side_input is None:
        return []
    if isinstance(side_input, collections.abc.Iterable) and not isinstance(
        side_input, str | bytes
    ):
        models = [m for m in side_input if m is not None]
        return sorted(models, key=_version_or_minus_one)
    return [side_input]


def _version_or_minus_one(model) -> int:
    version = getattr(model, "version", None)
    return version if isinstance(version, int) else -1


class ScoringMetrics:
    """The counters and distributions of both scoring steps.

    Attributes:
        batch_size: Rows per scored batch.
        latency: Time of one model call, in microseconds.
        unscored: Rows that arrived while no model was loaded.
        scored: Rows scored.
        anomalous: Rows at or above the model's threshold.
        loaded: Models switched to.
        rejected: Models refused as not servable.
    """

    def __init__(self):
        self.batch_size = Metrics.distribution(_NAMESPACE, "score_batch_size")
        self.latency = Metrics.distribution(_NAMESPACE, "score_latency_us")
        self.unscored = Metrics.counter(_NAMESPACE, "rows_without_model")
        self.scored = Metrics.counter(_NAMESPACE, "rows_scored")
        self.anomalous = Metrics.counter(_NAMESPACE, "rows_anomalous")
        self.loaded = Metrics.counter(_NAMESPACE, "models_loaded")
        self.rejected = Metrics.counter(_NAMESPACE, "models_rejected")


def score_batch(bundle, batch: list[dict], metrics: ScoringMetrics) -> Iterator:
    """Score a batch of feature rows in one model call; yield its events.

    Args:
        bundle: The ModelBundle to score with, or None to count the rows
            as unscored.
        batch: Feature rows as ComputeTrendFeatures emits them.
        metrics: Where the batch is counted.
    """
    metrics.batch_size.update(len(batch))
    if bundle is None:
        metrics.unscored.inc(len(batch))
        return
    rows = np.vstack([row["features"] for row in batch])
    started = time.perf_counter()
    scores = bundle.anomaly_scores(rows)
    metrics.latency.update(int((time.perf_counter() - started) * 1e6))
    metrics.scored.inc(len(batch))
    for i in np.flatnonzero(scores >= bundle.threshold):
        metrics.anomalous.inc()
        event = explain(bundle, rows[i], scores[i], batch[i])
        if event is not None:
            yield beam.window.TimestampedValue(
                event, Timestamp(micros=event["event_time"] * 1000)
            )


class _ScoreBatchDoFn(beam.DoFn):
    def __init__(self):
        self._token = uuid.uuid4().hex
        self._metrics = ScoringMetrics()

    def setup(self):
        self._latest = _latest_model(self._token)

    def process(self, batch, side_input):
        bundle = self._adopt(_offered(side_input))
        yield from score_batch(bundle, batch, self._metrics)

    def _adopt(self, offered: list):
        """Return the model to score with after seeing `offered` models."""
        latest = self._latest
        with latest.lock:
            for candidate in offered:
                if self._is_newer(latest, candidate):
                    self._check_and_switch(latest, candidate)
            return latest.bundle

    @staticmethod
    def _is_newer(latest: _LatestModel, candidate) -> bool:
        if candidate is latest.bundle:
            return False
        version = _version_or_minus_one(candidate)
        if latest.bundle is not None and version <= latest.bundle.version:
            return False
        return version not in latest.rejected

    def _check_and_switch(self, latest: _LatestModel, candidate) -> None:
        version = _version_or_minus_one(candidate)
        problems = servability_problems(candidate)
        if version < 0:
            problems.append("version is not a non-negative integer")
        if problems:
            latest.rejected.add(version)
            self._metrics.rejected.inc()
            _LOGGER.error(
                "Rejected model version %s, still scoring with %s: %s",
                version,
                "none" if latest.bundle is None else latest.bundle.version,
                "; ".join(problems),
            )
            return
        latest.bundle = candidate
        self._metrics.loaded.inc()
        _LOGGER.info("Scoring with model version %d", version)


class ScoreWindows(beam.PTransform):
    """Score feature rows in batches and emit anomaly events.

    Rows are keyed by a shard of the patient id and grouped with
    `GroupIntoBatches`, which fills batches across bundles. `BatchElements`
    batches only within a bundle, and after the windowed combine most
    bundles contain one row.

    Args:
        model: Singleton side input (`beam.pvalue.AsSingleton`) holding the
            current ModelBundle or None.
        max_batch_size: Largest batch. Default 4096 rows.
        max_buffering_sec: Longest a row waits for its batch to fill, in
            seconds of processing time. Default 1.
        shards: Number of parallel batching keys. Default 4.
    """

    def __init__(
        self, model, max_batch_size=4096, max_buffering_sec=1.0, shards=4
    ):
        super().__init__()
        self._model = model
        self._max_batch_size = max_batch_size
        self._max_buffering_sec = max_buffering_sec
        self._shards = shards

    def expand(self, rows):
        shards = self._shards
        return (
            rows
            | "KeyByShard"
            >> beam.Map(
                lambda row: (_shard(row["patient_id"], shards), row)
            ).with_output_types(tuple[int, dict])
            | "BatchFeatureRows"
            >> beam.GroupIntoBatches(
                self._max_batch_size,
                max_buffering_duration_secs=self._max_buffering_sec,
            )
            | "DropShardKey" >> beam.Values()
            | "ScoreFeatures" >> beam.ParDo(_ScoreBatchDoFn(), self._model)
        )


def _shard(patient_id: str, shards: int) -> int:
    # zlib.crc32 is stable across processes, unlike hash() of a str.
    return zlib.crc32(patient_id.encode()) % shards
