"""Trend features of a patient's readings, shared by training and serving.

The stateful stage turns each part of a block that lies within one
window period into a `Summary`: sufficient statistics per channel (count,
sums for mean and variance, extremes and the sums of a least-squares
slope), plus the patient's baseline at that time. Sliding windows merge
summaries, and `features_of` turns a merged summary into the feature
vector that the Isolation Forest scores. The `models` command calls the
same functions on Avro history, so training and serving cannot disagree.

Times inside a summary are minutes relative to `t_ref_ms`, the time of its
first reading, so that slope sums keep their precision; merging shifts one
summary onto the other's reference.
"""

import math

import numpy as np

from transforms.readings import ReadingBlock, is_small, split_by_period

# Channels summarised for features, in feature order.
STAT_CHANNELS = (
    "heart_rate_bpm",
    "spo2_pct",
    "rr_interval_ms",
    "pulse_rate_bpm",
    "rr_rmssd_ms",
)
# Baseline channels: their center and scale travel with each summary.
BASELINE_CHANNELS = ("heart_rate_bpm", "spo2_pct", "rr_rmssd_ms")

# Readings whose signal-quality index is below this are counted but not
# used in features: motion and loose electrodes produce them.
MIN_SIGNAL_QUALITY = 0.5

# Columns of the per-channel statistics matrix.
_N, _SUM, _SUMSQ, _MIN, _MAX, _SUM_T, _SUM_TT, _SUM_TX = range(8)
_STATS = 8
_MS_PER_MIN = 60_000.0
# Statistics of a channel without readings, with neutral extremes.
_EMPTY_STATS = np.array([0, 0, 0, np.inf, -np.inf, 0, 0, 0], dtype=float)
_EMPTY_ROW = _EMPTY_STATS.tolist()

FEATURE_NAMES = (
    "hr_mean_bpm",
    "hr_std_bpm",
    "hr_min_bpm",
    "hr_max_bpm",
    "hr_slope_bpm_per_min",
    "spo2_mean_pct",
    "spo2_min_pct",
    "spo2_slope_pct_per_min",
    "rr_mean_ms",
    "rmssd_mean_ms",
    "rmssd_to_rr_ratio",
    "hr_pulse_gap_bpm",
    "hr_baseline_z",
    "spo2_baseline_z",
    "rmssd_baseline_z",
    "good_quality_fraction",
)


class Summary:
    """Sufficient statistics of some readings of one patient.

    Attributes:
        t_ref_ms: Event time of the earliest reading, the zero of the time
            sums.
        t_last_ms: Event time of the latest reading.
        stats: float64 array (len(STAT_CHANNELS), 8) of n, sum, sum of
            squares, min, max, sum of t, sum of t squared and sum of t*x,
            over good-quality readings, with t in minutes from t_ref_ms.
        readings: Number of readings, including poor-quality ones.
        good_readings: Readings at or above MIN_SIGNAL_QUALITY.
        baseline: float64 array (len(BASELINE_CHANNELS), 2) of the
            patient's baseline center and scale at t_ref_ms, NaN while the
            baseline warms up.
    """

    __slots__ = (
        "t_ref_ms",
        "t_last_ms",
        "stats",
        "readings",
        "good_readings",
        "baseline",
    )

    def __init__(self, t_ref_ms, t_last_ms, stats, readings, good, baseline):
        self.t_ref_ms = int(t_ref_ms)
        self.t_last_ms = int(t_last_ms)
        self.stats = stats
        self.readings = int(readings)
        self.good_readings = int(good)
        self.baseline = baseline

    def __reduce__(self):
        return (
            Summary,
            (
                self.t_ref_ms,
                self.t_last_ms,
                self.stats,
                self.readings,
                self.good_readings,
                self.baseline,
            ),
        )


def no_baseline() -> np.ndarray:
    """Return the baseline of a patient not seen long enough."""
    return np.full((len(BASELINE_CHANNELS), 2), np.nan)


def summarize(block: ReadingBlock, baseline: np.ndarray) -> Summary:
    """Summarise a non-empty block, ignoring poor-quality readings."""
    if is_small(block):
        return _summarize_small(block, baseline)
    times = block.event_time_ms
    t_ref = int(times.min())
    good = block.values["signal_quality"] >= MIN_SIGNAL_QUALITY
    t = (times[good] - t_ref) / _MS_PER_MIN
    values = np.vstack([block.values[name] for name in STAT_CHANNELS])
    return Summary(
        t_ref,
        int(times.max()),
        _stats_matrix(t, values[:, good]),
        len(block),
        int(np.count_nonzero(good)),
        baseline,
    )


def _summarize_small(block: ReadingBlock, baseline: np.ndarray) -> Summary:
    """Compute what `summarize` does with Python floats, reading by reading.

    The sums add the values in reading order starting from 0.0, which is
    what NumPy 2.2's pairwise float64 sum does below 8 values, so the
    statistics are bit-identical. Python's `sum()` is not used because
    from Python 3.12 on it compensates rounding errors.
    """
    times = block.event_time_ms.tolist()
    t_ref = min(times)
    good = [
        index
        for index, quality in enumerate(block.values["signal_quality"].tolist())
        if quality >= MIN_SIGNAL_QUALITY
    ]
    t = [(times[index] - t_ref) / _MS_PER_MIN for index in good]
    rows = [
        _channel_stats_small(t, good, block.values[name].tolist())
        for name in STAT_CHANNELS
    ]
    return Summary(
        t_ref, max(times), np.array(rows), len(times), len(good), baseline
    )


def _channel_stats_small(
    t: list[float], good: list[int], values: list[float]
) -> list[float]:
    """Compute one row of statistics over the good, non-NaN `values`.

    Args:
        t: Minutes from the summary's reference time, one per good reading.
        good: Index into `values` of each good reading.
        values: One channel's values, NaN where not measured.
    """
    count = 0
    sum_x = sum_xx = sum_t = sum_tt = sum_tx = 0.0
    low, high = math.inf, -math.inf
    for t_min, index in zip(t, good, strict=True):
        x = values[index]
        if math.isnan(x):
            continue
        count += 1
        sum_x += x
        sum_xx += x * x
        sum_t += t_min
        sum_tt += t_min * t_min
        sum_tx += t_min * x
        low = x if x < low else low
        high = x if x > high else high
    if count == 0:
        return _EMPTY_ROW
    return [float(count), sum_x, sum_xx, low, high, sum_t, sum_tt, sum_tx]


def _stats_matrix(t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Compute the statistics of each row of `values` over its non-NaN values.

    Rows without NaN, the usual case, are computed together. Rows with
    some NaN are compressed one by one, so every sum adds the same values
    in the same order as for a row without gaps.
    """
    stats = np.empty((len(values), _STATS))
    stats[:] = _EMPTY_STATS
    present = ~np.isnan(values)
    complete = present.all(axis=1)
    if len(t) and complete.any():
        x = values[complete]
        stats[complete] = np.column_stack(
            [
                np.full(len(x), float(len(t))),
                x.sum(axis=1),
                (x * x).sum(axis=1),
                x.min(axis=1),
                x.max(axis=1),
                np.full(len(x), t.sum()),
                np.full(len(x), (t * t).sum()),
                (t * x).sum(axis=1),
            ]
        )
    partial = np.flatnonzero(~complete & present.any(axis=1))
    for row in partial.tolist():
        mask = present[row]
        stats[row] = _channel_stats(t[mask], values[row][mask])
    return stats


def _channel_stats(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return _EMPTY_STATS.copy()
    return np.array(
        [
            len(x),
            x.sum(),
            (x * x).sum(),
            x.min(),
            x.max(),
            t.sum(),
            (t * t).sum(),
            (t * x).sum(),
        ]
    )


def _shifted(stats: np.ndarray, shift_min: np.ndarray) -> np.ndarray:
    """Re-express the time sums of stacked `stats` with t' = t + shift_min.

    Args:
        stats: Statistics of k summaries, shape (k, channels, 8).
        shift_min: Shift of each summary in minutes, shape (k, 1).
    """
    out = stats.copy()
    n, sum_t, sum_x = stats[..., _N], stats[..., _SUM_T], stats[..., _SUM]
    out[..., _SUM_T] = sum_t + n * shift_min
    out[..., _SUM_TT] = (
        stats[..., _SUM_TT] + 2 * shift_min * sum_t + n * shift_min**2
    )
    out[..., _SUM_TX] = stats[..., _SUM_TX] + shift_min * sum_x
    return out


def merge(summaries) -> Summary | None:
    """Merge summaries of one patient; None when there are none."""
    summaries = [s for s in summaries if s is not None]
    if not summaries:
        return None
    refs = [s.t_ref_ms for s in summaries]
    t_ref = min(refs)
    shift_min = (np.array(refs, dtype=np.int64) - t_ref) / _MS_PER_MIN
    shifted = _shifted(
        np.stack([s.stats for s in summaries]), shift_min[:, None]
    )
    # Sums over the first axis add the summaries in list order, as a loop
    # would, so the result does not depend on how a runner batches merges.
    stats = shifted.sum(axis=0)
    stats[:, _MIN] = shifted[..., _MIN].min(axis=0)
    stats[:, _MAX] = shifted[..., _MAX].max(axis=0)
    return Summary(
        t_ref,
        max(s.t_last_ms for s in summaries),
        stats,
        sum(s.readings for s in summaries),
        sum(s.good_readings for s in summaries),
        _earliest_known_baseline(summaries),
    )


def _earliest_known_baseline(summaries) -> np.ndarray:
    # The baseline from before the window's events is the fair reference:
    # a later one may already have absorbed part of an episode.
    known = [s for s in summaries if not np.isnan(s.baseline[:, 0]).all()]
    if not known:
        return no_baseline()
    return min(known, key=lambda s: s.t_ref_ms).baseline


def _mean(row: np.ndarray) -> float:
    return row[_SUM] / row[_N] if row[_N] > 0 else math.nan


def _std(row: np.ndarray) -> float:
    if row[_N] < 2:
        return math.nan
    mean = row[_SUM] / row[_N]
    return math.sqrt(max(row[_SUMSQ] / row[_N] - mean * mean, 0.0))


def _slope(row: np.ndarray) -> float:
    n = row[_N]
    denominator = n * row[_SUM_TT] - row[_SUM_T] ** 2
    if n < 3 or denominator <= 1e-12:
        return math.nan
    return (n * row[_SUM_TX] - row[_SUM_T] * row[_SUM]) / denominator


def _extreme(row: np.ndarray, column: int) -> float:
    return row[column] if row[_N] > 0 else math.nan


def _baseline_z(summary: Summary, channel: str, mean: float) -> float:
    center, scale = summary.baseline[BASELINE_CHANNELS.index(channel)]
    if math.isnan(center) or math.isnan(mean):
        return math.nan
    return (mean - center) / scale


def features_of(summary: Summary) -> np.ndarray:
    """Compute the feature vector, in FEATURE_NAMES order; NaN if unknown."""
    hr, spo2, rr, pulse, rmssd = summary.stats
    hr_mean, spo2_mean, rr_mean = _mean(hr), _mean(spo2), _mean(rr)
    rmssd_mean = _mean(rmssd)
    return np.array(
        [
            hr_mean,
            _std(hr),
            _extreme(hr, _MIN),
            _extreme(hr, _MAX),
            _slope(hr),
            spo2_mean,
            _extreme(spo2, _MIN),
            _slope(spo2),
            rr_mean,
            rmssd_mean,
            rmssd_mean / rr_mean if rr_mean > 0 else math.nan,
            abs(hr_mean - _mean(pulse)),
            _baseline_z(summary, "heart_rate_bpm", hr_mean),
            _baseline_z(summary, "spo2_pct", spo2_mean),
            _baseline_z(summary, "rr_rmssd_ms", rmssd_mean),
            summary.good_readings / summary.readings
            if summary.readings
            else math.nan,
        ]
    )


def sliding_window_summaries(
    parts: list[Summary], size_ms: int, period_ms: int
) -> list[tuple[int, Summary]]:
    """Merge period parts into sliding windows, as the pipeline's windows do.

    Args:
        parts: Summaries that each lie within one aligned period.
        size_ms: Window size.
        period_ms: Window period; windows start on its multiples.

    Returns:
        (window start ms, merged summary) for every window with data, in
        start order.
    """
    by_start: dict[int, list[Summary]] = {}
    for part in parts:
        last_start = (part.t_ref_ms // period_ms) * period_ms
        for start in range(
            last_start - size_ms + period_ms, last_start + 1, period_ms
        ):
            by_start.setdefault(start, []).append(part)
    return [(start, merge(by_start[start])) for start in sorted(by_start)]


def part_summaries(
    block: ReadingBlock, baseline: np.ndarray, period_ms: int
) -> list[Summary]:
    """Summarise a block per aligned period, with the baseline attached.

    The stateful stage and the training command both call this, after
    folding the block into the baseline, so their features are identical.
    """
    return [
        summarize(part, baseline) for part in split_by_period(block, period_ms)
    ]
