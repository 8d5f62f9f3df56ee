"""The promote gate: each kind of rejection, and acceptance."""

import pathlib

import numpy as np
import pytest

from models import gate, registry, train
from tests.models.conftest import (
    WINDOW_SIZE_MS,
    synthetic_bundle,
)
from transforms.features import FEATURE_NAMES


def _episode_only_bundle(training_history):
    """Fit on the episode windows only, so that normal rows look odd."""
    table = training_history.table
    episodes = gate.read_episodes(training_history.ground_truth)
    labels = gate.window_labels(
        table.patient_ids, table.window_starts, WINDOW_SIZE_MS, episodes
    )
    return train.fit(table.rows[labels == 1], seed=0)


def test_labels_from_ground_truth(evaluation_set):
    anomalous = int(evaluation_set.labels.sum())
    assert anomalous >= 20
    assert len(evaluation_set.labels) - anomalous >= 200


def test_window_labels_overlap_rules():
    episodes = {"p": [(100_000, 220_000, "tachycardia")]}
    starts = np.array([0, 60_000, 180_000, 400_000])
    labels = gate.window_labels(["p"] * 4, starts, 300_000, episodes)
    # The third window contains 40 s of a 120 s episode: too little to count.
    assert labels.tolist() == [1, 1, -1, 0]


def test_window_labels_other_kind_is_ambiguous():
    episodes = {"p": [(0, 300_000, "motion_artifact")]}
    labels = gate.window_labels(["p"], np.array([0]), 300_000, episodes)
    assert labels.tolist() == [-1]


def test_gate_accepts_good_model(trained_bundle, evaluation_set):
    decision = gate.check_candidate(trained_bundle, evaluation_set)
    assert decision.accepted, decision.reasons
    assert decision.candidate_scores["roc_auc"] > 0.8
    assert decision.candidate_scores["average_precision"] > 0.3


def test_gate_rejects_constant_training(evaluation_set):
    constant = train.fit(np.ones((300, len(FEATURE_NAMES))), seed=0)
    decision = gate.check_candidate(constant, evaluation_set)
    assert not decision.accepted
    assert any("trained on constant data" in r for r in decision.reasons)
    assert any("score standard deviation" in r for r in decision.reasons)


def test_gate_rejects_other_sklearn(evaluation_set):
    bundle = synthetic_bundle(1)
    bundle.sklearn_version = "0.24.2"
    decision = gate.check_candidate(bundle, evaluation_set)
    assert not decision.accepted
    assert "incompatible artifact" in decision.reasons[0]
    assert "0.24.2" in decision.reasons[0]


def test_gate_rejects_other_features(evaluation_set):
    bundle = synthetic_bundle(1)
    bundle.feature_names = FEATURE_NAMES[:-1]
    decision = gate.check_candidate(bundle, evaluation_set)
    assert not decision.accepted
    assert "expects features" in decision.reasons[0]


def test_gate_rejects_non_bundle(evaluation_set):
    decision = gate.check_candidate({"not": "a model"}, evaluation_set)
    assert not decision.accepted
    assert "not a ModelBundle" in decision.reasons[0]


def test_gate_rejects_worse_model(
    trained_bundle, training_history, evaluation_set
):
    worse = _episode_only_bundle(training_history)
    decision = gate.check_candidate(worse, evaluation_set, trained_bundle)
    assert not decision.accepted
    assert any("roc_auc" in r for r in decision.reasons)
    assert decision.current_scores["roc_auc"] > 0.8


def test_gate_rejects_one_class_evaluation(trained_bundle, evaluation_set):
    normal = evaluation_set.labels == 0
    one_class = gate.LabelledRows(
        evaluation_set.rows[normal], evaluation_set.labels[normal]
    )
    decision = gate.check_candidate(trained_bundle, one_class)
    assert not decision.accepted
    assert "invalid evaluation set" in decision.reasons[0]


def test_gate_version_rejects_corrupt_file(tmp_path, evaluation_set):
    root = str(tmp_path)
    version = registry.save(root, synthetic_bundle(0))
    pathlib.Path(root, f"v{version:06d}", "model.pkl").write_bytes(b"")
    decision = gate.gate_version(root, version, evaluation_set)
    assert not decision.accepted
    assert decision.reasons[0].startswith("corrupt artifact")


def test_promote_if_accepted_records_decision(
    tmp_path, trained_bundle, training_history, evaluation_set
):
    root = str(tmp_path)
    good = registry.save(root, trained_bundle)
    worse = registry.save(root, _episode_only_bundle(training_history))
    assert gate.promote_if_accepted(root, good, evaluation_set).accepted
    rejected = gate.promote_if_accepted(root, worse, evaluation_set)
    assert not rejected.accepted
    assert registry.current_version(root) == good
    assert registry.read_metadata(root, worse)["gate"]["accepted"] is False
    assert registry.read_metadata(root, good)["gate"]["accepted"] is True


def test_gate_rejects_older_version(tmp_path, trained_bundle, evaluation_set):
    root = str(tmp_path)
    first = registry.save(root, trained_bundle)
    second = registry.save(root, trained_bundle)
    registry.promote(root, second)
    decision = gate.gate_version(root, first, evaluation_set)
    assert not decision.accepted
    assert "not newer" in decision.reasons[0]


def test_policy_rejects_unknown_metric():
    with pytest.raises(ValueError, match="invalid gate metric"):
        gate.GatePolicy(metric="accuracy")


def test_gate_ignores_broken_current(tmp_path, trained_bundle, evaluation_set):
    root = str(tmp_path)
    broken = registry.save(root, trained_bundle)
    registry.promote(root, broken)
    pathlib.Path(root, f"v{broken:06d}", "model.pkl").write_bytes(b"")
    replacement = registry.save(root, trained_bundle)
    decision = gate.gate_version(root, replacement, evaluation_set)
    assert decision.accepted, decision.reasons
    assert decision.current_version is None
