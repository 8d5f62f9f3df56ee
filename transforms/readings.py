"""Columnar blocks of readings, the unit that flows through the hot path.

Beam Python spends tens of microseconds per element per step, so the
pipeline does not move one reading per element unless the source sends
one per message. A `ReadingBlock` holds the consecutive readings of one
device as NumPy arrays, and every stage after decoding works on whole
blocks with vectorised code. Blocks of up to `SMALL_BLOCK_READINGS`
readings take a per-reading Python path instead, with identical results.

A channel that was not measured contains NaN. Readings inside one block share
the patient and the device.
"""

import dataclasses
import math

import numpy as np

from schemas import epoch_ms

# Blocks of at most this many readings take the per-reading Python path of
# each hot step, because NumPy's fixed cost per call outweighs the loop for
# them. Streaming sources deliver one reading per message. The summaries
# need this to stay below 8, because NumPy adds fewer than 8 float64
# values one after another, as the Python path does, and more pairwise.
# Set it to 0 to turn the path off.
# NOTE: `bench/small_blocks.py` measured the Python path at 1.7x less CPU
# than NumPy even with 25 readings per block, so a higher limit would pay
# if the summaries copied NumPy's pairwise order of additions.
SMALL_BLOCK_READINGS = 7

# Measured channels, in the order they appear in feature names.
CHANNELS = (
    "heart_rate_bpm",
    "spo2_pct",
    "rr_interval_ms",
    "signal_quality",
    "pulse_rate_bpm",
    "rr_rmssd_ms",
)

# Valid spacing of a VitalBatch's readings, from the schema's field doc.
MIN_INTERVAL_MS = 10
MAX_INTERVAL_MS = 60_000


@dataclasses.dataclass
class ReadingBlock:
    """Consecutive readings of one device, one array entry per reading.

    Attributes:
        patient_id: Pseudonymous patient identifier.
        device_id: Sending device.
        sequence: Per-device sequence numbers, int64.
        event_time_ms: Event times, int64 UTC milliseconds.
        values: One float64 array per name in `CHANNELS`; NaN where the
            channel was not measured.
        source: Where the block came from, for dead-letter records.
    """

    patient_id: str
    device_id: str
    sequence: np.ndarray
    event_time_ms: np.ndarray
    values: dict[str, np.ndarray]
    source: str = ""

    def __len__(self) -> int:
        return len(self.sequence)

    def take(self, index) -> "ReadingBlock":
        """Return the readings selected by a boolean mask or index array."""
        return ReadingBlock(
            self.patient_id,
            self.device_id,
            self.sequence[index],
            self.event_time_ms[index],
            {name: column[index] for name, column in self.values.items()},
            self.source,
        )

    def reading(self, i: int) -> dict:
        """Return reading `i` as a VitalReading record, NaN as null."""
        record = {
            "patient_id": self.patient_id,
            "device_id": self.device_id,
            "sequence": int(self.sequence[i]),
            "event_time": int(self.event_time_ms[i]),
        }
        for name in CHANNELS:
            value = float(self.values[name][i])
            record[name] = None if math.isnan(value) else value
        if record["signal_quality"] is None:
            record["signal_quality"] = math.nan
        return record


def _column(values, count: int) -> np.ndarray:
    if values is None or len(values) == 0:
        return np.full(count, np.nan)
    return np.asarray(values, dtype=np.float64)


def block_from_reading(record: dict, source: str = "") -> ReadingBlock:
    """Build a one-reading block from a decoded VitalReading record."""
    values = {}
    for name in CHANNELS:
        value = record.get(name)
        values[name] = np.array(
            [np.nan if value is None else value], dtype=np.float64
        )
    return ReadingBlock(
        record["patient_id"],
        record["device_id"],
        np.array([record["sequence"]], dtype=np.int64),
        np.array([epoch_ms(record["event_time"])], dtype=np.int64),
        values,
        source,
    )


def block_from_batch(record: dict, source: str = "") -> ReadingBlock:
    """Build a block from a decoded VitalBatch record.

    Raises:
        ValueError: When a present channel's length differs from the number
            of readings, which `signal_quality` defines, or `interval_ms` is
            outside the schema's valid range.
    """
    interval_ms = int(record["interval_ms"])
    if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
        raise ValueError(
            f"interval_ms={interval_ms} outside "
            f"{MIN_INTERVAL_MS}-{MAX_INTERVAL_MS}"
        )
    count = len(record["signal_quality"])
    values = {}
    for name in CHANNELS:
        column = record.get(name) or []
        if len(column) not in (0, count):
            raise ValueError(
                f"{name} has {len(column)} values but signal_quality has "
                f"{count}"
            )
        values[name] = _column(column, count)
    offsets = np.arange(count, dtype=np.int64)
    start = epoch_ms(record["start_time"])
    return ReadingBlock(
        record["patient_id"],
        record["device_id"],
        record["first_sequence"] + offsets,
        start + offsets * interval_ms,
        values,
        source,
    )


def concat(blocks: list[ReadingBlock]) -> ReadingBlock:
    """Join blocks of the same patient and device into one block."""
    first = blocks[0]
    if len(blocks) == 1:
        return first
    return ReadingBlock(
        first.patient_id,
        first.device_id,
        np.concatenate([b.sequence for b in blocks]),
        np.concatenate([b.event_time_ms for b in blocks]),
        {
            name: np.concatenate([b.values[name] for b in blocks])
            for name in first.values
        },
        first.source,
    )


def is_small(block: ReadingBlock) -> bool:
    """Check whether a block takes the per-reading Python path."""
    return len(block.sequence) <= SMALL_BLOCK_READINGS


def _is_sorted(times: list[int]) -> bool:
    return all(
        earlier <= later
        for earlier, later in zip(times, times[1:], strict=False)
    )


def sort_by_time(block: ReadingBlock) -> ReadingBlock:
    """Return the block in event-time order, stable for equal times.

    Blocks usually arrive sorted, and then the block itself is returned.
    """
    if is_small(block):
        if _is_sorted(block.event_time_ms.tolist()):
            return block
    elif np.all(block.event_time_ms[1:] >= block.event_time_ms[:-1]):
        return block
    return block.take(np.argsort(block.event_time_ms, kind="stable"))


def split_by_period(block: ReadingBlock, period_ms: int) -> list[ReadingBlock]:
    """Split a block so each part lies within one aligned event-time period.

    Sliding windows of any size whose period is `period_ms` start on
    multiples of it, so every reading of a part belongs to the same set of
    windows and the part can carry one timestamp.

    Returns:
        Parts in ascending period order, each sorted by event time.
    """
    ordered = sort_by_time(block)
    if is_small(ordered):
        times = ordered.event_time_ms.tolist()
        if not times or times[0] // period_ms == times[-1] // period_ms:
            return [ordered]
    periods = ordered.event_time_ms // period_ms
    cuts = np.flatnonzero(np.diff(periods)) + 1
    if len(cuts) == 0:
        return [ordered]
    bounds = [0, *cuts.tolist(), len(ordered)]
    return [
        ordered.take(slice(start, end))
        for start, end in zip(bounds[:-1], bounds[1:], strict=False)
    ]
