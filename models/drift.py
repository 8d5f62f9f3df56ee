"""Population stability index (PSI) of feature rows against training data.

Training stores, per feature, a reference histogram: interior bin edges at
the deciles of the training values, the proportion of training rows in
each bin and the proportion of missing (NaN) values. Live rows are binned
with the same edges, and the PSI of a feature is

    PSI = sum over bins of (live - train) * ln(live / train),

with the missing values as one more bin. Common reading of the value: below
0.1 the population is stable, 0.1 to 0.25 it shifted moderately, above 0.25
it shifted enough that the model's view of "normal" is in doubt (Yurdakul,
"Statistical Properties of Population Stability Index", 2018).
"""

import math

import numpy as np

__all__ = [
    "DRIFT_PSI_THRESHOLD",
    "bin_counts",
    "feature_psi",
    "histogram_psi",
    "population_stability_index",
    "reference_histogram",
    "reference_histograms",
    "training_histograms",
]

DRIFT_PSI_THRESHOLD = 0.25
# Deciles: ten bins keep the PSI stable with a few hundred live rows.
_BINS = 10
# Empty bins get this proportion, so that ln(live / train) stays finite.
_MIN_PROPORTION = 1e-4


def reference_histogram(values: np.ndarray, bins: int = _BINS) -> dict:
    """Build the reference histogram of one feature's training values.

    Args:
        values: Training values of the feature; NaN means missing.
        bins: Number of quantile bins. Default 10. Repeated quantiles,
            as in a feature that is mostly one value, merge into one edge.

    Returns:
        A JSON-ready dict: `edges` (interior bin edges, ascending),
        `proportions` (len(edges) + 1 values, from below the first edge to
        above the last) and `missing` (proportion of NaN values).
    """
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return {"edges": [], "proportions": [1.0], "missing": 1.0}
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(present, quantiles))
    counts, missing = bin_counts(values, edges)
    total = len(values)
    return {
        "edges": edges.tolist(),
        "proportions": (counts / total).tolist(),
        "missing": missing / total,
    }


def reference_histograms(rows: np.ndarray, feature_names) -> dict:
    """Build one reference histogram per column of `rows`, keyed by name."""
    rows = np.asarray(rows, dtype=np.float64)
    return {
        name: reference_histogram(rows[:, i])
        for i, name in enumerate(feature_names)
    }


def training_histograms(metadata: dict) -> dict:
    """Return the reference histograms by feature name from model metadata.

    Raises:
        KeyError: When the metadata has no "feature_statistics", as in
            models trained before histograms were stored.
    """
    statistics = metadata["feature_statistics"]
    return {name: entry["histogram"] for name, entry in statistics.items()}


def bin_counts(values: np.ndarray, edges) -> tuple[np.ndarray, int]:
    """Count values per bin of `edges` and the missing ones.

    A value equal to an edge falls in the bin above it, and values below
    the first or above the last edge fall in the open outer bins.

    Returns:
        Counts per bin (len(edges) + 1 integers) and the count of NaNs.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(np.asarray(edges), values[~missing], "right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return counts, int(missing.sum())


def population_stability_index(expected, actual) -> float:
    """Compute the PSI of two proportion vectors over the same bins.

    Proportions below 1e-4, empty bins included, count as 1e-4.
    """
    expected = np.maximum(np.asarray(expected, dtype=np.float64), 0.0)
    actual = np.maximum(np.asarray(actual, dtype=np.float64), 0.0)
    expected = np.maximum(expected, _MIN_PROPORTION)
    actual = np.maximum(actual, _MIN_PROPORTION)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def histogram_psi(histogram: dict, counts, missing: int) -> float:
    """Compute the PSI of live bin counts against a reference histogram.

    Returns:
        The PSI, or NaN when there are no live values.
    """
    total = int(np.sum(counts)) + int(missing)
    if total == 0:
        return math.nan
    expected = [*histogram["proportions"], histogram["missing"]]
    actual = np.append(np.asarray(counts, dtype=np.float64), missing) / total
    return population_stability_index(expected, actual)


def feature_psi(rows: np.ndarray, histograms: dict) -> dict[str, float]:
    """Compute the PSI of each feature of live rows.

    Args:
        rows: Live feature rows, one column per histogram, in the order of
            `histograms`.
        histograms: Reference histograms by feature name, as returned by
            `training_histograms`.

    Returns:
        PSI by feature name; NaN for every feature when `rows` is empty.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(histograms))
    result = {}
    for i, (name, histogram) in enumerate(histograms.items()):
        counts, missing = bin_counts(rows[:, i], histogram["edges"])
        result[name] = histogram_psi(histogram, counts, missing)
    return result
