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
from transforms.readings import ReadingBlock

# Time constant of the exponential weighting: an hour of data dominates.
TIME_CONSTANT_MIN = 60.0
WARMUP_MIN = 10.0
# Parts further than this many scales from the center update slowly.
ROBUST_LIMIT = 4.0
SLOW_FACTOR = 0.1
# Floors keep z-scores meaningful for very steady patients, in each
# channel's unit (bpm, %, ms).
SCALE_FLOORS = np.array([3.0, 1.0, 8.0])


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
        out = np.column_stack(
            [self.center, np.maximum(self.scale, SCALE_FLOORS)]
        )
        out[self.minutes_seen < WARMUP_MIN] = np.nan
        return out

    def update(self, block: ReadingBlock) -> None:
        """Fold the good-quality readings of a block into the baseline."""
        good = block.values["signal_quality"] >= MIN_SIGNAL_QUALITY
        if not good.any():
            return
        t_last = int(block.event_time_ms.max())
        elapsed_min = max(
            (t_last - self.last_update_ms) / 60_000.0
            if self.last_update_ms
            else 1.0,
            len(block) / 60.0,
        )
        elapsed_min = min(elapsed_min, 60.0)
        medians = _row_medians(
            np.vstack([block.values[name] for name in BASELINE_CHANNELS])[
                :, good
            ]
        )
        for row, median in enumerate(medians):
            if median is not None:
                self._update_channel(row, median, elapsed_min)
        self.last_update_ms = max(self.last_update_ms, t_last)

    def _update_channel(self, row: int, value: float, elapsed_min: float):
        if math.isnan(self.center[row]):
            self.center[row] = value
            self.scale[row] = SCALE_FLOORS[row]
            self.minutes_seen[row] = elapsed_min
            return
        alpha = 1.0 - math.exp(-elapsed_min / TIME_CONSTANT_MIN)
        # Early on, weigh new data more so the baseline settles quickly.
        alpha = max(alpha, elapsed_min / max(self.minutes_seen[row], 1.0))
        alpha = min(alpha, 1.0)
        deviation = abs(value - self.center[row])
        floor = max(self.scale[row], SCALE_FLOORS[row])
        if self.minutes_seen[row] >= WARMUP_MIN and (
            deviation > ROBUST_LIMIT * floor
        ):
            alpha *= SLOW_FACTOR
        self.center[row] += alpha * (value - self.center[row])
        self.scale[row] += alpha * (deviation - self.scale[row])
        self.minutes_seen[row] += elapsed_min


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
