"""NAB scoring, implemented from the benchmark's published rules.

The Numenta Anomaly Benchmark (NAB v1.1; Lavin and Ahmad, "Evaluating
Real-time Anomaly Detection Algorithms - the Numenta Anomaly Benchmark",
arXiv:1510.03336) scores a streaming detector on labelled series:

* The first ``probation_rows`` rows of a series are a warm-up period,
  ``min(floor(0.15 * rows), 0.15 * 5000)``. Detections there are ignored
  and those rows are not counted.
* Each labelled anomaly window is a span of rows. Only the first
  detection inside a window counts. It earns ``tp_weight`` times the
  scaled sigmoid of its relative position, divided by the sigmoid's value
  at the window's first row, so a detection at the first row earns
  exactly ``tp_weight`` and one at the last row little. Later detections
  in the same window earn nothing and cost nothing.
* A window without a detection costs ``fn_weight``. A window that lies
  wholly inside the probation period is not scored.
* A detection outside every window is a false positive. Before the first
  window it costs ``fp_weight``. After a window it costs ``fp_weight``
  times the sigmoid of its distance past that window's last row, in units
  of the window's width minus one row: almost nothing right after the
  window and the full weight from about one window width on.
* Corpus scores are normalised so that the null detector, which detects
  nothing, scores 0 and a perfect detector, which detects every window at
  its first row and nothing else, scores 100.

These rules follow the scoring code of NAB v1.1 (``nab/sweeper.py`` and
the normalisation in ``nab/runner.py`` of github.com/numenta/NAB), which
differs from the paper's prose in the TP divisor and the FP distance.
``bench/quality/nab_eval.py`` checks them against the published scores.

The row counts TP, TN, FP and FN follow NAB's per-row convention: TP and
FP count detection rows in and outside windows, FN and TN the other rows.

Example::

    profile = load_profiles(path)["standard"]
    windows = window_rows(timestamps, [(start, end)])
    result = score_file(detections, windows, profile)
"""

import dataclasses
import json
import math
import os

import numpy as np

__all__ = [
    "CostProfile",
    "FileScore",
    "load_profiles",
    "normalised_score",
    "perfect_raw_score",
    "probation_rows",
    "scaled_sigmoid",
    "score_file",
    "window_rows",
]

# NAB's warm-up: 15 % of a series, capped at 15 % of 5000 rows.
_PROBATION_FRACTION = 0.15
_PROBATION_CAP_ROWS = 5000
# Steepness of the scaled sigmoid, and the distance past a window (in
# window lengths) beyond which a false positive costs the full weight.
_SIGMOID_STEEPNESS = 5.0
_FULL_PENALTY_POSITION = 3.0


@dataclasses.dataclass(frozen=True)
class CostProfile:
    """Weights of one NAB scoring profile."""

    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class FileScore:
    """Score of one series.

    Attributes:
        raw: Raw (unnormalised) score.
        tp, tn, fp, fn: Row counts after the probation period.
        detected_windows: Windows with at least one detection.
        missed_windows: Windows without a detection.
        first_detection_rows: Row of the counted detection per detected
            window, in window order.
    """

    raw: float
    tp: int
    tn: int
    fp: int
    fn: int
    detected_windows: int
    missed_windows: int
    first_detection_rows: tuple[int, ...] = ()


def load_profiles(path: str | os.PathLike) -> dict[str, CostProfile]:
    """Read NAB's ``profiles.json`` into cost profiles by name."""
    with open(path) as source:
        raw = json.load(source)
    profiles = {}
    for name, spec in raw.items():
        costs = spec["CostMatrix"]
        profiles[name] = CostProfile(
            tp_weight=float(costs["tpWeight"]),
            fp_weight=float(costs["fpWeight"]),
            fn_weight=float(costs["fnWeight"]),
            tn_weight=float(costs.get("tnWeight", 1.0)),
        )
    return profiles


def scaled_sigmoid(position: float) -> float:
    """Return the NAB reward for a relative position, in [-1, 1].

    Position -1 is a window's first row and 0 its end, so an early
    detection scores about 0.987. Positive positions are distances past a
    window's end in window lengths, and score down to -1.
    """
    if position >= _FULL_PENALTY_POSITION:
        return -1.0
    return 2.0 / (1.0 + math.exp(_SIGMOID_STEEPNESS * position)) - 1.0


def probation_rows(n_rows: int) -> int:
    """Return the number of warm-up rows NAB ignores in a series."""
    return int(
        min(
            math.floor(_PROBATION_FRACTION * n_rows),
            _PROBATION_FRACTION * _PROBATION_CAP_ROWS,
        )
    )


def window_rows(
    timestamps: np.ndarray, windows: list[tuple]
) -> list[tuple[int, int]]:
    """Map [start, end] windows to inclusive (first row, last row) pairs.

    Args:
        timestamps: Row times as ``datetime64``, sorted.
        windows: (start, end) pairs of anything ``np.datetime64`` takes.

    Raises:
        ValueError: When a window contains no row.
    """
    bounds = []
    for start, end in windows:
        first = int(np.searchsorted(timestamps, np.datetime64(start), "left"))
        last = int(np.searchsorted(timestamps, np.datetime64(end), "right"))
        if last <= first:
            raise ValueError(
                f"window {start} to {end} contains no row of the series; "
                "check that the labels belong to this series"
            )
        bounds.append((first, last - 1))
    return sorted(bounds)


def score_file(
    detections: np.ndarray,
    windows: list[tuple[int, int]],
    profile: CostProfile,
    probation: int | None = None,
) -> FileScore:
    """Score the detections of one series.

    Args:
        detections: Boolean per row, True where the detector fires.
        windows: Sorted, non-overlapping (first row, last row) pairs.
        profile: Cost weights.
        probation: Warm-up rows to ignore; None uses ``probation_rows``.
    """
    detections = np.asarray(detections, dtype=bool)
    n_rows = len(detections)
    if probation is None:
        probation = probation_rows(n_rows)
    scored = detections.copy()
    scored[:probation] = False
    in_window = np.zeros(n_rows, dtype=bool)
    for first, last in windows:
        in_window[first : last + 1] = True
    in_window[:probation] = False
    scored_windows = [w for w in windows if w[1] >= probation]
    raw, first_rows = _window_credit(scored, scored_windows, profile)
    raw += _false_positive_cost(scored & ~in_window, windows, profile)
    live = np.arange(n_rows) >= probation
    tp = int(np.count_nonzero(scored & in_window))
    fp = int(np.count_nonzero(scored & ~in_window))
    fn = int(np.count_nonzero(in_window & ~scored))
    return FileScore(
        raw=raw,
        tp=tp,
        tn=int(np.count_nonzero(live)) - tp - fp - fn,
        fp=fp,
        fn=fn,
        detected_windows=len(first_rows),
        missed_windows=len(scored_windows) - len(first_rows),
        first_detection_rows=tuple(first_rows),
    )


def _window_credit(scored, windows, profile) -> tuple[float, list[int]]:
    """Return the TP rewards minus FN costs, and each counted detection."""
    earliest_reward = scaled_sigmoid(-1.0)
    total = 0.0
    first_rows = []
    for first, last in windows:
        hits = np.flatnonzero(scored[first : last + 1])
        if len(hits) == 0:
            total -= profile.fn_weight
            continue
        row = first + int(hits[0])
        width = last - first + 1
        # Row `first` sits at -1 and the row after `last` at 0.
        position = -(last - row + 1) / width
        total += profile.tp_weight * scaled_sigmoid(position) / earliest_reward
        first_rows.append(row)
    return total, first_rows


def _false_positive_cost(false_rows, windows, profile) -> float:
    total = 0.0
    ends = np.array([last for _, last in windows], dtype=np.int64)
    # NAB measures the distance in widths minus one row. A one-row window
    # would divide by zero there, so its distance is counted in rows.
    spans = np.array([max(b - a, 1) for a, b in windows], dtype=np.int64)
    for row in np.flatnonzero(false_rows):
        before = int(np.searchsorted(ends, row, "left")) - 1
        if before < 0:
            total -= profile.fp_weight
            continue
        position = (row - ends[before]) / spans[before]
        total += profile.fp_weight * scaled_sigmoid(position)
    return total


def perfect_raw_score(n_windows: int, profile: CostProfile) -> float:
    """Return the raw score of a detector that fires at each window start."""
    return n_windows * profile.tp_weight


def normalised_score(raw: float, n_windows: int, profile: CostProfile) -> float:
    """Normalise a corpus's summed raw score: null 0, perfect 100."""
    null = -n_windows * profile.fn_weight
    perfect = perfect_raw_score(n_windows, profile)
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)
