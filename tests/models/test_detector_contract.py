"""One contract over every detector: pickling, determinism, warm-up, skill.

Detectors:

* isolation_forest: the `ModelBundle` that scores window feature rows.
  Units are window rows; the score is `anomaly_scores`.
* fast_checks: the sustained-condition rules of `transforms.fast_checks`
  run over each patient's readings in 60-reading blocks, as the stateful
  stage runs them. Units are patients; the score is the number of events.

Each case maps a simulated history with ground truth to (scores, labels)
per unit, so the same checks apply to both.
"""

import functools
import json
from unittest import mock

import numpy as np
import pytest
from apache_beam.internal import pickler
from sklearn.metrics import roc_auc_score

from models import gate, train
from models.bundle import ModelBundle
from schemas import read_container
from tests.models.conftest import WINDOW_SIZE_MS, synthetic_bundle
from transforms import fast_checks
from transforms.baseline import Baseline
from transforms.features import FEATURE_NAMES, no_baseline
from transforms.readings import ReadingBlock
from transforms.scoring import _ScoreBatchDoFn

_BLOCK_READINGS = 60
# Episode kinds the fast path has a rule for.
_FAST_PATH_KINDS = (
    "tachycardia",
    "bradycardia",
    "desaturation",
    "irregular_rhythm",
)


class IsolationForestCase:
    name = "isolation_forest"

    def __init__(self, training_history):
        self._training = training_history

    def build(self, seed: int) -> ModelBundle:
        return train.fit(self._training.table.rows, n_estimators=100, seed=seed)

    def scores_and_labels(self, detector, history):
        episodes = gate.read_episodes(history.ground_truth)
        evaluation = gate.LabelledRows.from_history(
            history.table, WINDOW_SIZE_MS, episodes
        )
        return detector.anomaly_scores(evaluation.rows), evaluation.labels


class FastChecksCase:
    name = "fast_checks"

    def build(self, seed: int):
        # The rules have no parameters to fit and no randomness; the seed
        # is accepted so that the contract reads the same for every case.
        return tuple(fast_checks.CONDITIONS)

    def scores_and_labels(self, detector, history):
        kinds = _episode_kinds(history.ground_truth)
        blocks = _patient_blocks(history.records)
        scores, labels = [], []
        for patient_id, block in blocks.items():
            scores.append(len(_fast_path_events(detector, block)))
            labels.append(int(kinds.get(patient_id) in _FAST_PATH_KINDS))
        return np.asarray(scores, dtype=float), np.asarray(labels)


@functools.cache
def _patient_blocks(path: str) -> dict[str, ReadingBlock]:
    return train.blocks_from_records(read_container(path))


def _episode_kinds(path: str) -> dict[str, str]:
    with open(path) as table:
        rows = [json.loads(line) for line in table]
    return {
        r["patient_id"]: r["kind"] for r in rows if r["category"] == "episode"
    }


def _fast_path_events(conditions, block: ReadingBlock) -> list[dict]:
    """Run `conditions` over one patient's readings, baseline first.

    `fast_checks.check` reads the module's CONDITIONS, so they are swapped
    for the given ones, which may be an unpickled copy.
    """
    baseline, runs, events = Baseline(), {}, []
    with mock.patch.object(fast_checks, "CONDITIONS", conditions):
        for start in range(0, len(block), _BLOCK_READINGS):
            chunk = block.take(slice(start, start + _BLOCK_READINGS))
            baseline.update(chunk)
            snapshot = baseline.snapshot()
            events.extend(fast_checks.check(chunk, snapshot, runs, True))
    return events


@pytest.fixture(params=["isolation_forest", "fast_checks"])
def case(request, training_history):
    if request.param == "isolation_forest":
        return IsolationForestCase(training_history)
    return FastChecksCase()


def test_pickling_round_trip(case, evaluation_history):
    detector = case.build(seed=0)
    # Beam's own pickler, which ships DoFns and side inputs to workers.
    copy = pickler.loads(pickler.dumps(detector))
    before, _ = case.scores_and_labels(detector, evaluation_history)
    after, _ = case.scores_and_labels(copy, evaluation_history)
    np.testing.assert_array_equal(before, after)


def test_deterministic_with_seed(case, evaluation_history):
    first, _ = case.scores_and_labels(case.build(seed=7), evaluation_history)
    second, _ = case.scores_and_labels(case.build(seed=7), evaluation_history)
    np.testing.assert_array_equal(first, second)


def test_better_than_chance(case, evaluation_history):
    scores, labels = case.scores_and_labels(
        case.build(seed=0), evaluation_history
    )
    assert 0 < labels.sum() < len(labels)
    assert roc_auc_score(labels, scores) > 0.7


def test_forest_seed_changes_model(training_history, evaluation_set):
    forest = IsolationForestCase(training_history)
    first = forest.build(seed=1).anomaly_scores(evaluation_set.rows)
    second = forest.build(seed=2).anomaly_scores(evaluation_set.rows)
    assert not np.array_equal(first, second)


def test_forest_without_rows_raises():
    with pytest.raises(ValueError, match="no training rows"):
        train.fit(np.empty((0, len(FEATURE_NAMES))))


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_forest_on_one_row_is_degenerate(evaluation_set):
    # Too little history fits, but every row then scores the same and the
    # promote gate rejects the model.
    bundle = train.fit(evaluation_set.rows[:1], seed=0)
    assert np.ptp(bundle.anomaly_scores(evaluation_set.rows)) == 0.0
    decision = gate.check_candidate(bundle, evaluation_set)
    assert not decision.accepted


def test_forest_scores_rows_during_baseline_warm_up():
    # Baseline z-scores are NaN until a patient's baseline warms up; the
    # bundle imputes them with training medians.
    bundle = synthetic_bundle(1)
    row = np.array(bundle.medians, dtype=float)
    row[FEATURE_NAMES.index("hr_baseline_z")] = np.nan
    row[FEATURE_NAMES.index("spo2_baseline_z")] = np.nan
    row[FEATURE_NAMES.index("rmssd_baseline_z")] = np.nan
    scores = bundle.anomaly_scores(row[None, :])
    assert np.isfinite(scores).all()


def test_scoring_without_model_emits_nothing():
    # Before the first promotion the side input is None.
    dofn = _ScoreBatchDoFn()
    dofn.setup()
    row = {
        "patient_id": "patient-a",
        "window_start": 0,
        "event_time": 1000,
        "features": np.zeros(len(FEATURE_NAMES)),
    }
    assert list(dofn.process([row], None)) == []


def _block(heart_rate: float, seconds: int, start_ms: int = 0) -> ReadingBlock:
    n = seconds
    values = {
        "heart_rate_bpm": np.full(n, heart_rate),
        "spo2_pct": np.full(n, 97.0),
        "rr_interval_ms": np.full(n, 60_000 / heart_rate),
        "signal_quality": np.ones(n),
        "pulse_rate_bpm": np.full(n, heart_rate),
        "rr_rmssd_ms": np.full(n, 30.0),
    }
    return ReadingBlock(
        "patient-a",
        "device-a",
        np.arange(n, dtype=np.int64),
        start_ms + np.arange(n, dtype=np.int64) * 1000,
        values,
    )


def test_fast_checks_wait_for_sustain_time():
    runs = {}
    short = fast_checks.check(_block(30, 3), no_baseline(), runs, True)
    assert short == []
    more = fast_checks.check(_block(30, 5, 3000), no_baseline(), runs, True)
    assert [e["kind"] for e in more] == ["bradycardia"]


def test_fast_checks_skip_baseline_rule_in_warm_up():
    # 125 bpm for three minutes: far from a 70 bpm baseline, but below the
    # tachycardia limit, so only the baseline rule could fire.
    block = _block(125, 180)
    assert fast_checks.check(block, no_baseline(), {}, True) == []
    baseline = np.array([[70.0, 3.0], [97.0, 1.0], [30.0, 8.0]])
    kinds = [e["kind"] for e in fast_checks.check(block, baseline, {}, True)]
    assert kinds == ["hr_deviation"]
