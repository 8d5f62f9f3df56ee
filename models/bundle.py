"""A trained Isolation Forest with everything needed to score and explain.

A `ModelBundle` carries the estimator, the feature names in order, the
medians used to impute missing features, robust per-feature statistics of
the training data (for explanations and drift) and the score threshold.
Scoring is batched: one `score_samples` call per batch of rows, never one
per reading.
"""

import dataclasses

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest


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
        return rows

    def anomaly_scores(self, rows: np.ndarray) -> np.ndarray:
        """Score a batch of feature rows in one call.

        Returns:
            Scores from 0 to 1, higher is more anomalous: the score of Liu,
            Ting and Zhou (2008), which sklearn's `score_samples` negates.
        """
        return -self.estimator.score_samples(self.impute(rows))

    def deviations(self, rows: np.ndarray) -> np.ndarray:
        """Robust z-scores of each feature against the training data."""
        return (np.asarray(rows, dtype=np.float64) - self.medians) / self.scales
