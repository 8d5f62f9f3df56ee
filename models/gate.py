"""The validation gate a model version passes before it is promoted.

A candidate is rejected, with each reason stated, when:

* its artifact is corrupt or cannot score this pipeline's rows (it does
  not unpickle, is not a ModelBundle, expects other feature names, was
  fitted with another scikit-learn version, or fails to score);
* it is degenerate: every training feature had an IQR of 0, or its scores
  on the evaluation rows are nearly identical (standard deviation below
  `GatePolicy.min_score_std`), so that it cannot rank rows;
* the labelled evaluation set lacks normal or anomalous rows;
* it ranks the evaluation rows no better than `GatePolicy.min_metric`, or
  worse than the current model by more than `GatePolicy.max_metric_drop`.

Evaluation labels come from ground-truth episodes, as the device simulator
writes them in `ground_truth.jsonl`. A window row is anomalous when it
overlaps a clinical episode of its patient by at least half of the shorter
of the window and the episode. It is normal when it overlaps no episode,
and it is left out otherwise.
"""

import dataclasses
import json
import logging
import math

import numpy as np
from apache_beam.io.filesystems import FileSystems
from sklearn.metrics import average_precision_score, roc_auc_score

from models import registry
from models.bundle import ModelBundle, servability_problems
from models.train import HistoryTable

__all__ = [
    "CLINICAL_EPISODE_KINDS",
    "GateDecision",
    "GatePolicy",
    "LabelledRows",
    "check_candidate",
    "evaluate",
    "gate_version",
    "promote_if_accepted",
    "read_episodes",
    "training_problems",
    "window_labels",
]

_LOGGER = logging.getLogger(__name__)

# Episodes a model should flag. Sensor-off and motion-artefact episodes
# are signal problems that the fast path and the quality fraction handle.
CLINICAL_EPISODE_KINDS = (
    "tachycardia",
    "bradycardia",
    "desaturation",
    "irregular_rhythm",
)
_MIN_OVERLAP_FRACTION = 0.5
_NORMAL, _ANOMALOUS, _AMBIGUOUS = 0, 1, -1
_METRICS = {
    "roc_auc": roc_auc_score,
    "average_precision": average_precision_score,
}


@dataclasses.dataclass(frozen=True)
class GatePolicy:
    """Thresholds of the gate.

    Attributes:
        metric: "roc_auc" or "average_precision" of the anomaly score
            against the labels. Default roc_auc.
        min_metric: Lowest acceptable metric. Default 0.5, chance level
            of ROC AUC.
        max_metric_drop: How far below the current model's metric a
            candidate may score, to allow for seed noise. Default 0.005.
        min_score_std: Smallest standard deviation of the candidate's
            scores on the evaluation rows. Default 1e-6.
    """

    metric: str = "roc_auc"
    min_metric: float = 0.5
    max_metric_drop: float = 0.005
    min_score_std: float = 1e-6

    def __post_init__(self):
        if self.metric not in _METRICS:
            raise ValueError(
                f"invalid gate metric {self.metric!r}: expected one of "
                f"{sorted(_METRICS)}"
            )


@dataclasses.dataclass(frozen=True)
class LabelledRows:
    """Evaluation rows in FEATURE_NAMES order with 0/1 labels."""

    rows: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_history(
        cls, table: HistoryTable, window_size_ms: int, episodes: dict
    ) -> "LabelledRows":
        """Label a history's rows, leaving out the ambiguous ones."""
        labels = window_labels(
            table.patient_ids, table.window_starts, window_size_ms, episodes
        )
        keep = labels != _AMBIGUOUS
        return cls(table.rows[keep], labels[keep])


@dataclasses.dataclass
class GateDecision:
    """Outcome of the gate for one candidate.

    Attributes:
        version: Candidate version; None for a candidate not yet saved.
        accepted: Whether the candidate may be promoted.
        reasons: Why it was rejected; empty when accepted.
        candidate_scores: Evaluation of the candidate, from `evaluate`.
        current_version: The version it was compared with, if any.
        current_scores: Evaluation of that version.
    """

    version: int | None
    accepted: bool
    reasons: list[str]
    candidate_scores: dict = dataclasses.field(default_factory=dict)
    current_version: int | None = None
    current_scores: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        """Return the decision as JSON-ready metadata."""
        return dataclasses.asdict(self)


def read_episodes(path: str) -> dict[str, list[tuple[int, int, str]]]:
    """Read episodes from a ground-truth JSON-lines file.

    Rows other than episodes (the simulator also lists faults) are skipped.

    Returns:
        By patient id: (event start ms, event end ms, kind) per episode.
    """
    episodes: dict[str, list[tuple[int, int, str]]] = {}
    with FileSystems.open(path) as stream:
        for line in stream.read().decode().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("category") != "episode":
                continue
            entry = (row["event_start_ms"], row["event_end_ms"], row["kind"])
            episodes.setdefault(row["patient_id"], []).append(entry)
    return episodes


def window_labels(
    patient_ids, window_starts, window_size_ms: int, episodes: dict
) -> np.ndarray:
    """Label window rows from episodes.

    Returns:
        Per row 1 (anomalous), 0 (normal) or -1 (ambiguous: a short
        overlap with a clinical episode, or any overlap with another kind).
    """
    labels = np.full(len(patient_ids), _NORMAL, dtype=np.int64)
    for i, (patient_id, start) in enumerate(
        zip(patient_ids, window_starts, strict=True)
    ):
        end = int(start) + window_size_ms
        for first, last, kind in episodes.get(patient_id, ()):
            overlap = min(end, last) - max(int(start), first)
            if overlap <= 0:
                continue
            shorter = min(window_size_ms, last - first)
            clinical = kind in CLINICAL_EPISODE_KINDS
            if clinical and overlap >= _MIN_OVERLAP_FRACTION * shorter:
                labels[i] = _ANOMALOUS
                break
            labels[i] = _AMBIGUOUS
    return labels


def evaluate(bundle: ModelBundle, evaluation: LabelledRows) -> dict:
    """Score the evaluation rows and rank them against the labels.

    Returns:
        rows, anomalous (count), score_std, and roc_auc and
        average_precision (NaN unless both labels occur).
    """
    scores = bundle.anomaly_scores(evaluation.rows)
    labels = evaluation.labels
    both = 0 < labels.sum() < len(labels)
    result = {
        "rows": int(len(labels)),
        "anomalous": int(labels.sum()),
        "score_std": float(np.std(scores)) if len(scores) else 0.0,
    }
    for name, metric in _METRICS.items():
        result[name] = float(metric(labels, scores)) if both else math.nan
    return result


def check_candidate(
    candidate,
    evaluation: LabelledRows,
    current: ModelBundle | None = None,
    policy: GatePolicy = GatePolicy(),
) -> GateDecision:
    """Decide whether `candidate` may replace `current`.

    Args:
        candidate: The unpickled candidate artifact.
        evaluation: Labelled rows to rank.
        current: The promoted model, or None when none is.
        policy: Gate thresholds.
    """
    version = getattr(candidate, "version", None)
    reasons = [f"incompatible artifact: {p}" for p in _problems(candidate)]
    if reasons:
        return GateDecision(version, False, reasons)
    reasons.extend(training_problems(candidate))
    reasons.extend(_evaluation_set_problems(evaluation))
    scores = evaluate(candidate, evaluation)
    if scores["score_std"] < policy.min_score_std:
        reasons.append(
            f"degenerate model: score standard deviation "
            f"{scores['score_std']:.3g} on {scores['rows']} evaluation rows "
            f"is below {policy.min_score_std:g}"
        )
    decision = GateDecision(version, False, reasons, scores)
    if current is not None:
        decision.current_version = current.version
        decision.current_scores = evaluate(current, evaluation)
    if not reasons:
        reasons.extend(_metric_problems(decision, policy))
    decision.accepted = not reasons
    return decision


def _problems(candidate) -> list[str]:
    try:
        return servability_problems(candidate)
    except Exception as error:  # noqa: BLE001 - any failure means corrupt
        return [f"checking the artifact failed: {error!r}"]


def training_problems(candidate: ModelBundle) -> list[str]:
    """List problems of the training data that the metadata shows."""
    statistics = candidate.metadata.get("feature_statistics")
    if not statistics:
        return []
    if all(not entry["iqr"] for entry in statistics.values()):
        return [
            "degenerate model: trained on constant data, every feature "
            "has an IQR of 0"
        ]
    return []


def _evaluation_set_problems(evaluation: LabelledRows) -> list[str]:
    anomalous = int(evaluation.labels.sum())
    normal = len(evaluation.labels) - anomalous
    if anomalous and normal:
        return []
    return [
        f"invalid evaluation set: {anomalous} anomalous and {normal} normal "
        "rows, but both kinds are needed; evaluate on data with episodes"
    ]


def _metric_problems(decision: GateDecision, policy: GatePolicy):
    name = policy.metric
    value = decision.candidate_scores[name]
    if not value > policy.min_metric:
        yield (
            f"{name} {value:.4f} on the evaluation set is not above "
            f"{policy.min_metric:.4f}"
        )
    current = decision.current_scores.get(name)
    if current is not None and value < current - policy.max_metric_drop:
        yield (
            f"worse than the current model: {name} {value:.4f} against "
            f"{current:.4f} of version {decision.current_version}, more "
            f"than {policy.max_metric_drop:g} lower"
        )


def gate_version(
    root: str,
    version: int,
    evaluation: LabelledRows,
    policy: GatePolicy = GatePolicy(),
) -> GateDecision:
    """Run the gate on a saved version against the promoted one.

    A promoted version that no longer loads is logged and not compared
    with, so that a broken artifact cannot block its own replacement.
    """
    current_version = registry.current_version(root)
    if current_version is not None and version <= current_version:
        return GateDecision(
            version,
            False,
            [
                f"version {version} is not newer than the promoted version "
                f"{current_version}, and versions never go backwards"
            ],
        )
    try:
        candidate = registry.load(root, version)
    except registry.ModelLoadError as error:
        return GateDecision(version, False, [f"corrupt artifact: {error}"])
    current = None
    if current_version is not None:
        try:
            current = registry.load(root, current_version)
        except registry.ModelLoadError as error:
            _LOGGER.error("Not comparing with the promoted model: %s", error)
    return check_candidate(candidate, evaluation, current, policy)


def promote_if_accepted(
    root: str,
    version: int,
    evaluation: LabelledRows,
    policy: GatePolicy = GatePolicy(),
) -> GateDecision:
    """Gate a saved version, record the decision and promote if accepted.

    The decision is stored under "gate" in the version's metadata.
    """
    decision = gate_version(root, version, evaluation, policy)
    try:
        registry.update_metadata(root, version, {"gate": decision.as_dict()})
    except registry.ModelLoadError as error:
        _LOGGER.error("Cannot record the gate decision: %s", error)
    if decision.accepted:
        registry.promote(root, version)
    else:
        _LOGGER.warning(
            "Rejected model version %s: %s",
            version,
            "; ".join(decision.reasons),
        )
    return decision
