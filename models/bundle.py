"""A trained Isolation Forest with everything needed to score and explain.

A `ModelBundle` carries the estimator, the feature names in order, the
medians used to impute missing features, robust per-feature statistics of
the training data (for explanations and drift) and the score threshold.
Scoring is batched: one `score_samples` call per batch of rows, never one
per reading.
"""

import dataclasses
import math

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

from transforms.features import FEATURE_NAMES


@dataclasses.dataclass
class ModelBundle:
    """A versioned, self-describing anomaly model.

    Attributes:
        version: Registry version, an increasing integer.
        estimator: The fitted IsolationForest.
        feature_names: Names of the columns the estimator expects.
        medians: Per-feature training medians, used for NaN imputation.
        scales: Per-feature robust scales (IQR / 1.349, floored).
        threshold: Anomaly score at or above which a row is anomalous,
            on the 0 to 1 scale of `anomaly_scores`.
        sklearn_version: scikit-learn version that fitted the estimator.
        metadata: Training window, data statistics and evaluation scores.
    """

    version: int
    estimator: IsolationForest
    feature_names: tuple
    medians: np.ndarray
    scales: np.ndarray
    threshold: float
    sklearn_version: str = sklearn.__version__
    metadata: dict = dataclasses.field(default_factory=dict)

    def impute(self, rows: np.ndarray) -> np.ndarray:
        """Replace NaN features by the training medians."""
        rows = np.array(rows, dtype=np.float64, copy=True)
        missing = np.isnan(rows)
        if missing.any():
            rows[missing] = np.broadcast_to(self.medians, rows.shape)[missing]
        # A feature the training data never had carries no information the
        # trees learnt; a real value there would look like an outlier.
        untrained = self._untrained_columns()
        rows[:, untrained] = self.medians[untrained]
        return rows

    def _untrained_columns(self) -> list[int]:
        names = list(self.feature_names)
        return [
            names.index(name)
            for name in self.metadata.get("features_without_data", [])
            if name in names
        ]

    def anomaly_scores(self, rows: np.ndarray) -> np.ndarray:
        """Score a batch of feature rows in one call.

        Returns:
            Scores from 0 to 1, higher is more anomalous: the score of Liu,
            Ting and Zhou (2008), which sklearn's `score_samples` negates.
        """
        return -self.estimator.score_samples(self.impute(rows))

    def deviations(self, rows: np.ndarray) -> np.ndarray:
        """Robust z-scores of each feature against the training data.

        Features without training data get 0: no reference exists.
        """
        z = (np.asarray(rows, dtype=np.float64) - self.medians) / self.scales
        z[..., self._untrained_columns()] = 0.0
        return z


def servability_problems(bundle) -> list[str]:
    """List why `bundle` cannot score this pipeline's rows; empty if it can.

    Checks the type, the feature names and their order, the scikit-learn
    version (a pickled estimator from another version may unpickle and
    still score differently), the threshold, and that one row of training
    medians scores to a finite value.
    """
    if not isinstance(bundle, ModelBundle):
        return [f"artifact is a {type(bundle).__name__}, not a ModelBundle"]
    problems = []
    if tuple(bundle.feature_names) != FEATURE_NAMES:
        problems.append(
            f"model expects features {list(bundle.feature_names)}, the "
            f"pipeline computes {list(FEATURE_NAMES)}"
        )
    if bundle.sklearn_version != sklearn.__version__:
        problems.append(
            f"model was fitted with scikit-learn {bundle.sklearn_version}, "
            f"this process runs {sklearn.__version__}"
        )
    if not isinstance(bundle.threshold, float | int) or not math.isfinite(
        bundle.threshold
    ):
        problems.append(f"threshold {bundle.threshold!r} is not finite")
    if not problems:
        problems.extend(_probe_problems(bundle))
    return problems


def _probe_problems(bundle: ModelBundle) -> list[str]:
    try:
        probe = np.asarray(bundle.medians, dtype=np.float64)[None, :]
        score = bundle.anomaly_scores(probe)
    except (AttributeError, TypeError, ValueError, IndexError) as error:
        return [f"scoring a probe row failed: {error!r}"]
    if score.shape != (1,) or not np.isfinite(score).all():
        return [f"scoring a probe row returned {score!r}"]
    return []
