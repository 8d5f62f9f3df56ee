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
from apache_beam.runners.worker.statecache import CacheAware
from sklearn.ensemble import IsolationForest

from transforms.features import FEATURE_NAMES


class _SizeInBytes:
    """Stand-in for memory that Beam's state cache cannot see by itself.

    `sys.getsizeof` of an instance returns the byte count it was given.
    """

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def __sizeof__(self) -> int:
        return self.nbytes


# Attribute that keeps a bundle's `_SizeInBytes`, left out of pickles.
_CACHE_SIZE_KEY = "_cache_size"


@dataclasses.dataclass
class ModelBundle(CacheAware):
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

    def get_referents_for_cache(self) -> list:
        """List what Beam's state cache measures when it caches the bundle.

        Streaming runs keep the bundle in keyed state. Left to itself, the
        cache walks the estimator's Python objects (about 2,500 for 200
        trees) on every load and write, and misses the arrays held by
        sklearn's Cython `Tree`, most of the model's memory. The trees are
        counted here instead.
        """
        referents = [
            self.feature_names,
            self.medians,
            self.scales,
            self.metadata,
            self.sklearn_version,
        ]
        marker = self.__dict__.get(_CACHE_SIZE_KEY)
        if marker is None or marker.nbytes != _tree_nbytes(self.estimator):
            # Rare: the estimator was replaced after construction.
            marker = self._refresh_cache_size()
        referents.append(self.estimator if marker is None else marker)
        return referents

    def _refresh_cache_size(self) -> "_SizeInBytes | None":
        # The stand-in is made here, outside any measurement. objsize
        # excludes ids collected when a measurement starts, and an object
        # created during the walk was seen to reuse such an id and go
        # uncounted.
        tree_bytes = _tree_nbytes(self.estimator)
        marker = None if tree_bytes is None else _SizeInBytes(tree_bytes)
        self.__dict__[_CACHE_SIZE_KEY] = marker
        return marker

    def __post_init__(self):
        self._refresh_cache_size()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop(_CACHE_SIZE_KEY, None)
        return state

    def __setstate__(self, state: dict):
        self.__dict__.update(state)
        self._refresh_cache_size()

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


def _tree_nbytes(estimator) -> int | None:
    """Estimate the bytes of a fitted forest's trees, or None for other models.

    Counts each tree's node and value arrays and its feature subset, the
    arrays that grow with the model. Small Python attributes are left out.
    """
    trees = getattr(estimator, "estimators_", None)
    subsets = getattr(estimator, "estimators_features_", None)
    if not trees or subsets is None:
        return None
    try:
        node_bytes = trees[0].tree_.__getstate__()["nodes"].dtype.itemsize
        total = sum(np.asarray(s).nbytes for s in subsets)
        for tree in trees:
            total += tree.tree_.node_count * node_bytes
            total += tree.tree_.value.nbytes
    except (AttributeError, KeyError, TypeError):
        return None
    return int(total)


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
