"""Physiological and temporal validation of decoded readings.

Invalid values never reach the features or the model. A reading with any
invalid value is removed from its block and returned as a dead-letter
record whose detail names the field and the value. Readings with a poor
signal-quality index are valid but masked later, by the feature code.
"""

import math
import time

import numpy as np

from schemas import VITAL_READING, encode_record
from transforms.readings import CHANNELS, ReadingBlock, is_small

# Inclusive valid range per channel, in the channel's unit. Heart rate and
# pulse rate outside 20-300 bpm, SpO2 above 100 % and an SQI outside 0-1 are
# physically impossible. SpO2 below 50 % is outside every oximeter's
# calibrated range (ISO 80601-2-61 requires accuracy only from 70 %).
VALID_RANGES = {
    "heart_rate_bpm": (20.0, 300.0),
    "spo2_pct": (50.0, 100.0),
    "rr_interval_ms": (200.0, 3000.0),
    "signal_quality": (0.0, 1.0),
    "pulse_rate_bpm": (20.0, 300.0),
    "rr_rmssd_ms": (0.0, 1000.0),
}

_LOWS = np.array([[low] for low, _ in VALID_RANGES.values()])
_HIGHS = np.array([[high] for _, high in VALID_RANGES.values()])

# Devices sync their clocks, so a reading more than this far ahead of the
# pipeline's clock has a wrong timestamp, not an early arrival.
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
# 2000-01-01T00:00:00Z: anything older is an unset device clock.
MIN_EVENT_TIME_MS = 946_684_800_000


def nan_mask_of_record(kind_is_batch: bool, record: dict) -> dict:
    """Find explicit NaN values, which are invalid, before NaN means absent.

    Returns:
        Per channel, a boolean array over the record's readings, True where
        the device sent NaN. Channels without NaN are left out.
    """
    masks = {}
    for name in CHANNELS:
        value = record.get(name)
        if kind_is_batch:
            if value:
                mask = np.isnan(np.asarray(value, dtype=np.float64))
                if mask.any():
                    masks[name] = mask
        elif isinstance(value, float) and math.isnan(value):
            masks[name] = np.array([True])
    return masks


def invalid_reasons(
    block: ReadingBlock,
    nan_masks: dict,
    now_ms: int | None = None,
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Check every reading of a block.

    Args:
        block: Readings, NaN where a channel was not measured.
        nan_masks: Explicit NaN positions from `nan_mask_of_record`.
        now_ms: Processing time in epoch milliseconds; the wall clock when
            None.
        max_future_skew_ms: How far ahead of `now_ms` an event time may be.

    Returns:
        A boolean mask of valid readings, and for each invalid reading in
        order a (reason code, detail) pair. The reason is the first problem
        found; the detail lists every problem.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not nan_masks and _all_valid(block, now_ms, max_future_skew_ms):
        return np.ones(len(block), dtype=bool), []
    problems = [[] for _ in range(len(block))]
    for name, mask in nan_masks.items():
        for i in np.flatnonzero(mask):
            problems[i].append(("not_a_number", f"{name} is NaN"))
    _check_ranges(block, problems)
    _check_times(block, now_ms, max_future_skew_ms, problems)
    valid = np.array([not found for found in problems], dtype=bool)
    reasons = [
        (found[0][0], "; ".join(detail for _, detail in found))
        for found in problems
        if found
    ]
    return valid, reasons


def _all_valid(block: ReadingBlock, now_ms: int, max_skew_ms: int) -> bool:
    """Check in a few array operations that no reading has a problem.

    NaN compares false, so absent channels pass here, and a missing
    signal quality is caught by its own test.
    """
    if is_small(block):
        return _all_valid_small(block, now_ms, max_skew_ms)
    values = np.vstack([block.values[name] for name in VALID_RANGES])
    with np.errstate(invalid="ignore"):
        out_of_range = (values < _LOWS) | (values > _HIGHS)
    times = block.event_time_ms
    return not (
        out_of_range.any()
        or np.isnan(block.values["signal_quality"]).any()
        or (times > now_ms + max_skew_ms).any()
        or (times < MIN_EVENT_TIME_MS).any()
    )


def _all_valid_small(block: ReadingBlock, now_ms: int, max_skew_ms: int):
    """Check reading by reading what `_all_valid` checks on arrays."""
    for name, (low, high) in VALID_RANGES.items():
        for value in block.values[name].tolist():
            if value < low or value > high:
                return False
    for quality in block.values["signal_quality"].tolist():
        if math.isnan(quality):
            return False
    latest_ms = now_ms + max_skew_ms
    for time_ms in block.event_time_ms.tolist():
        if time_ms > latest_ms or time_ms < MIN_EVENT_TIME_MS:
            return False
    return True


def _check_ranges(block: ReadingBlock, problems: list) -> None:
    for name, (low, high) in VALID_RANGES.items():
        column = block.values[name]
        with np.errstate(invalid="ignore"):
            bad = (column < low) | (column > high)
        for i in np.flatnonzero(bad):
            problems[i].append(
                (
                    "out_of_range",
                    f"{name}={column[i]:g} outside {low:g}-{high:g}",
                )
            )
    quality = block.values["signal_quality"]
    for i in np.flatnonzero(np.isnan(quality)):
        if not any(code == "not_a_number" for code, _ in problems[i]):
            problems[i].append(("missing_field", "signal_quality is missing"))


def _check_times(
    block: ReadingBlock, now_ms: int, max_skew_ms: int, problems: list
) -> None:
    times = block.event_time_ms
    for i in np.flatnonzero(times > now_ms + max_skew_ms):
        ahead_s = (int(times[i]) - now_ms) / 1000
        problems[i].append(
            (
                "future_timestamp",
                f"event_time {_iso(times[i])} is {ahead_s:.0f} s ahead of "
                "processing time",
            )
        )
    for i in np.flatnonzero(times < MIN_EVENT_TIME_MS):
        problems[i].append(
            (
                "implausible_timestamp",
                f"event_time {_iso(times[i])} is before 2000-01-01",
            )
        )


def _iso(epoch_ms) -> str:
    seconds = int(epoch_ms) / 1000
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{int(epoch_ms)} ms"


def dead_letter(
    payload: bytes, reason: str, detail: str, source: str, now_ms: int
) -> dict:
    """Build a DeadLetter record."""
    return {
        "payload": payload,
        "reason": reason,
        "detail": detail,
        "source": source,
        "rejected_at": now_ms,
    }


def reading_payload(block: ReadingBlock, i: int) -> bytes:
    """Re-encode reading `i` of a block so a dead letter carries it alone."""
    record = block.reading(i)
    try:
        return encode_record(VITAL_READING, record)
    except (ValueError, TypeError, OverflowError):
        return repr(record).encode()
