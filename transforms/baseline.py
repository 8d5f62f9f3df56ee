"""A patient's own rolling baseline of heart rate, SpO2 and RMSSD.

The baseline is an exponentially weighted mean of per-part medians, with an
exponentially weighted mean absolute deviation as its scale. Parts that
deviate strongly move it ten times slower, so a sustained episode is not
absorbed into "normal" within minutes. The baseline is unknown (NaN) until
`WARMUP_MIN` minutes of good readings were seen: alerts during warm-up rely
on clinical limits and the population model only.
"""

import dataclasses
import math

import numpy as np

from transforms.features import BASELINE_CHANNELS, MIN_SIGNAL_QUALITY
from transforms.readings import ReadingBlock, is_small

# Time constant of the exponential weighting: an hour of data dominates.
TIME_CONSTANT_MIN = 60.0
WARMUP_MIN = 10.0
# Parts further than this many scales from the center update slowly.
ROBUST_LIMIT = 4.0
SLOW_FACTOR = 0.1
# Floors keep z-scores meaningful for very steady patients, in each
# channel's unit (bpm, %, ms).
SCALE_FLOORS = np.array([3.0, 1.0, 8.0])
_SCALE_FLOORS = tuple(SCALE_FLOORS.tolist())


@dataclasses.dataclass
class Baseline:
    """Rolling baseline state; arrays are ordered as BASELINE_CHANNELS."""

    center: np.ndarray = dataclasses.field(
        default_factory=lambda: np.full(len(BASELINE_CHANNELS), np.nan)
    )
    scale: np.ndarray = dataclasses.field(
        default_factory=lambda: np.full(len(BASELINE_CHANNELS), np.nan)
    )
    minutes_seen: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(len(BASELINE_CHANNELS))
    )
    last_update_ms: int = 0

    def snapshot(self) -> np.ndarray:
        """Return (center, scale) per channel, NaN until warmed up."""
        # Built from Python floats: a few NumPy calls on 3-element arrays
        # would cost more than the loop, on every block.
        rows = []
        for center, scale, minutes, floor in zip(
            self.center.tolist(),
            self.scale.tolist(),
            self.minutes_seen.tolist(),
            _SCALE_FLOORS,
            strict=True,
        ):
            if minutes < WARMUP_MIN:
                rows.append((math.nan, math.nan))
            else:
                # As np.maximum: a NaN scale stays NaN.
                rows.append((center, floor if scale < floor else scale))
        return np.array(rows)

    def update(self, block: ReadingBlock) -> None:
        """Fold the good-quality readings of a block into the baseline."""
        if is_small(block):
            medians = _good_medians_small(block)
        else:
            medians = _good_medians(block)
        if medians is None:
            return
        times = block.event_time_ms
        t_last = max(times.tolist()) if is_small(block) else int(times.max())
        elapsed_min = max(
            (t_last - self.last_update_ms) / 60_000.0
            if self.last_update_ms
            else 1.0,
            len(block) / 60.0,
        )
        elapsed_min = min(elapsed_min, 60.0)
        # Python floats make the same IEEE operations as NumPy scalars,
        # at a fraction of the cost per operation.
        center = self.center.tolist()
        scale = self.scale.tolist()
        minutes_seen = self.minutes_seen.tolist()
        for row, median in enumerate(medians):
            if median is not None:
                center[row], scale[row], minutes_seen[row] = _updated_channel(
                    row,
                    (center[row], scale[row], minutes_seen[row]),
                    median,
                    elapsed_min,
                )
        self.center[:] = center
        self.scale[:] = scale
        self.minutes_seen[:] = minutes_seen
        self.last_update_ms = max(self.last_update_ms, t_last)


def _updated_channel(row: int, channel, value: float, elapsed_min: float):
    """Fold one part's median into a channel's (center, scale, minutes)."""
    center, scale, minutes_seen = channel
    if math.isnan(center):
        return value, _SCALE_FLOORS[row], elapsed_min
    alpha = 1.0 - math.exp(-elapsed_min / TIME_CONSTANT_MIN)
    # Early on, weigh new data more so the baseline settles quickly.
    alpha = max(alpha, elapsed_min / max(minutes_seen, 1.0))
    alpha = min(alpha, 1.0)
    deviation = abs(value - center)
    floor = max(scale, _SCALE_FLOORS[row])
    if minutes_seen >= WARMUP_MIN and deviation > ROBUST_LIMIT * floor:
        alpha *= SLOW_FACTOR
    return (
        center + alpha * (value - center),
        scale + alpha * (deviation - scale),
        minutes_seen + elapsed_min,
    )


def _good_medians(block: ReadingBlock) -> list[float | None] | None:
    """Compute the median of each baseline channel over good readings.

    Returns:
        One median per channel, None for a channel without values. None
        instead of the list when the block has no good reading.
    """
    good = block.values["signal_quality"] >= MIN_SIGNAL_QUALITY
    if not good.any():
        return None
    return _row_medians(
        np.vstack([block.values[name] for name in BASELINE_CHANNELS])[:, good]
    )


def _good_medians_small(block: ReadingBlock) -> list[float | None] | None:
    """Compute what `_good_medians` does, reading by reading."""
    good = [
        quality >= MIN_SIGNAL_QUALITY
        for quality in block.values["signal_quality"].tolist()
    ]
    if not any(good):
        return None
    medians = []
    for name in BASELINE_CHANNELS:
        present = sorted(
            value
            for value, is_good in zip(
                block.values[name].tolist(), good, strict=True
            )
            if is_good and not math.isnan(value)
        )
        if not present:
            medians.append(None)
            continue
        count = len(present)
        low, high = present[(count - 1) // 2], present[count // 2]
        medians.append((low + high) / 2)
    return medians


def _row_medians(matrix: np.ndarray) -> list[float | None]:
    """Compute each row's median of non-NaN values, None if there are none.

    One sort of the whole matrix replaces a `np.median` call per row. NaN
    sorts last, so the k values of a row come first, and the mean of its
    middle pair is what `np.median` returns for the same values.
    """
    ordered = np.sort(matrix, axis=1)
    counts = np.count_nonzero(~np.isnan(matrix), axis=1).tolist()
    medians = []
    for row, count in enumerate(counts):
        if count == 0:
            medians.append(None)
            continue
        low = ordered[row, (count - 1) // 2]
        high = ordered[row, count // 2]
        medians.append(float((low + high) / 2))
    return medians
