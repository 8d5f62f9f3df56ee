"""Replay a WFDB recording as the per-second readings of a wearable.

A wearable's edge processor turns raw ECG and PPG into one VitalReading per
second. This module does the same offline for the labelled recordings, so
that the pipeline receives real physiology with known episodes.

Reading ``t`` (sequence ``t``, event time ``start_epoch_ms + t * 1000``)
summarises the signal up to the end of second ``t``, so every trailing
window below ends at ``t + 1`` s:

* Beats: the first ECG lead in the order MLII, II, I is cleaned and its R
  peaks detected with neurokit2 (``ecg_clean`` and ``ecg_peaks``, method
  ``"neurokit"``). NOTE: on CinC record b560s (true extreme bradycardia,
  pulse about 34 bpm) this detector also counts T waves and reports about
  70 bpm; its signal quality there is about 0.5.
* ``heart_rate_bpm``: 60000 / median of the RR intervals that end in the
  last 5 s. Null when fewer than 2 beats fall in the last 4 s, which is how
  asystole shows.
* ``rr_interval_ms``: mean of the RR intervals that end in this second,
  null when no beat ends in it.
* ``rr_rmssd_ms``: RMSSD of the RR intervals that end in the last 10 s,
  null with fewer than 2 successive differences.
* ``signal_quality``: bSQI, the agreement of two QRS detectors over the
  last 10 s (Li, Mark and Clifford, "Robust heart rate estimation from
  multiple asynchronous noisy sources using signal quality indices and a
  Kalman filter", Physiol. Meas. 29:15-32, 2008): matched beats divided by
  the beats either detector found, with neurokit2's ``"neurokit"`` and
  ``"pantompkins1985"`` detectors (each after its own ``ecg_clean``
  method) and a 150 ms match tolerance. It is
  multiplied by the fraction of non-NaN ECG samples in the window. A
  window where neither detector finds a beat scores 1, because both agree.
* ``pulse_rate_bpm``: as the heart rate, from neurokit2 ``ppg_peaks`` on
  the ``PLETH`` channel. Null for records without PPG.
* ``spo2_pct``: always null, because none of these recordings carries an
  SpO2 channel.

Values outside the schema's valid range are emitted as null instead of
being clamped, because the pipeline dead-letters out-of-range values and a
detector artefact should not read as a patient event. ``ReplayResult``
counts every null by field and reason (``too_few_beats``, ``no_beats``,
``out_of_range``).

Outputs: ``ReplayResult.readings()`` and ``.batches()`` return records as
dicts, ``.payloads()`` returns single-object-encoded VitalReading payloads,
and ``write_replay`` writes them to Avro container files and a
length-prefixed payload file (see ``simulator.write_framed``).

Command line: ``python -m devices replay --help``.
"""

import dataclasses
import logging
import os
import pathlib
from collections.abc import Iterator

import neurokit2
import numpy as np
import wfdb

from devices import labels
from devices.simulator import write_framed
from schemas import codec

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "DEFAULT_FIRMWARE",
    "DEFAULT_START_EPOCH_MS",
    "ReplayResult",
    "recording_from_path",
    "replay_record",
    "write_replay",
]

_LOGGER = logging.getLogger(__name__)

# 2026-01-01T00:00:00Z: a fixed default keeps replays byte-identical.
DEFAULT_START_EPOCH_MS = 1_767_225_600_000
DEFAULT_FIRMWARE = "edge-replay-1"
# One VitalBatch per minute, the upload period of a typical phone gateway.
DEFAULT_BATCH_SECONDS = 60

# Lead preference: MLII and II are the standard monitoring leads.
_ECG_LEADS = ("MLII", "II", "I")
_PPG_CHANNEL = "PLETH"
_RATE_WINDOW_SEC = 5.0
# Asystole is no QRS for 4 s (the CinC 2015 alarm definition).
_MIN_BEATS_WINDOW_SEC = 4.0
_MIN_BEATS = 2
_RMSSD_WINDOW_SEC = 10.0
_MIN_RMSSD_DIFFERENCES = 2
_SQI_WINDOW_SEC = 10.0
_SQI_MATCH_TOLERANCE_SEC = 0.15

# Valid ranges from the VitalReading schema; values outside become null.
_VALID_RANGES = {
    "heart_rate_bpm": (20.0, 300.0),
    "rr_interval_ms": (200.0, 3000.0),
    "pulse_rate_bpm": (20.0, 300.0),
    "rr_rmssd_ms": (0.0, 1000.0),
}
_OPTIONAL_FIELDS = (
    "heart_rate_bpm",
    "spo2_pct",
    "rr_interval_ms",
    "pulse_rate_bpm",
    "rr_rmssd_ms",
)


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """Per-second readings of one replayed recording, as column arrays.

    NaN in an optional column means null. Arrays have one entry per whole
    second of the recording.

    Attributes:
        patient_id: Pseudonymous id, ``"rec-<dataset>-<record>"``.
        device_id: ``"edge-<dataset>-<record>"``.
        start_epoch_ms: Event time of reading 0, UTC epoch milliseconds.
        firmware: Firmware string written into every record.
        ecg_lead: Name of the ECG lead the beats came from.
        has_ppg: Whether the record has a PPG channel.
        columns: Field name to float32 array, for the five optional fields
            and ``signal_quality``.
        null_counts: ``"<field>.<reason>"`` to the number of nulls.
    """

    patient_id: str
    device_id: str
    start_epoch_ms: int
    firmware: str
    ecg_lead: str
    has_ppg: bool
    columns: dict[str, np.ndarray]
    null_counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.columns["signal_quality"])

    def readings(self) -> Iterator[dict]:
        """Yield one VitalReading dict per second, in sequence order."""
        values = {
            name: _to_optional_list(self.columns[name])
            for name in _OPTIONAL_FIELDS
        }
        quality = self.columns["signal_quality"].tolist()
        for t in range(len(self)):
            record = {
                "patient_id": self.patient_id,
                "device_id": self.device_id,
                "sequence": t,
                "event_time": self.start_epoch_ms + t * 1000,
                "signal_quality": quality[t],
                "firmware": self.firmware,
            }
            for name in _OPTIONAL_FIELDS:
                record[name] = values[name][t]
            yield record

    def batches(
        self, batch_seconds: int = DEFAULT_BATCH_SECONDS
    ) -> Iterator[dict]:
        """Yield VitalBatch dicts of at most ``batch_seconds`` readings.

        A batch channel is either present for every reading or empty, and
        NaN in a present channel is invalid. A batch therefore also ends
        where a channel switches between null and present.
        """
        if batch_seconds < 1:
            raise ValueError(f"batch_seconds must be >= 1, got {batch_seconds}")
        for first, stop in _batch_bounds(self.columns, batch_seconds):
            yield self._batch(first, stop)

    def payloads(self) -> Iterator[bytes]:
        """Yield each reading as an Avro single-object-encoded payload."""
        for record in self.readings():
            yield codec.encode_reading(record)

    def _batch(self, first: int, stop: int) -> dict:
        batch = {
            "patient_id": self.patient_id,
            "device_id": self.device_id,
            "first_sequence": first,
            "start_time": self.start_epoch_ms + first * 1000,
            "interval_ms": 1000,
            "firmware": self.firmware,
        }
        for name in (*_OPTIONAL_FIELDS, "signal_quality"):
            chunk = self.columns[name][first:stop]
            batch[name] = [] if np.isnan(chunk[0]) else chunk.tolist()
        return batch


def recording_from_path(path: str | os.PathLike) -> labels.Recording:
    """Build a ``Recording`` from a record path without extension.

    The data-set tag comes from the parent folder's name when it is a known
    data-set folder, else the folder name itself is used.
    """
    path = pathlib.Path(path)
    folder = path.parent.name
    tags = {folder_name: tag for tag, folder_name in labels.DATASETS.items()}
    return labels.Recording(tags.get(folder, folder), path.name, path)


def replay_record(
    recording: labels.Recording,
    start_epoch_ms: int = DEFAULT_START_EPOCH_MS,
    firmware: str = DEFAULT_FIRMWARE,
) -> ReplayResult:
    """Replay one WFDB record as per-second readings.

    Args:
        recording: The record to read, see ``labels.list_recordings``.
        start_epoch_ms: Event time of reading 0, UTC epoch milliseconds.
        firmware: Firmware string for every record.

    Returns:
        The readings as column arrays.

    Raises:
        ValueError: When the record has no MLII, II or I lead.
    """
    record = wfdb.rdrecord(str(recording.path))
    fs = float(record.fs)
    lead = _pick_lead(record.sig_name, recording.name)
    ecg = record.p_signal[:, record.sig_name.index(lead)]
    n_seconds = int(len(ecg) // fs)
    ends = np.arange(1, n_seconds + 1, dtype=np.float64)
    null_counts: dict[str, int] = {}

    columns = _ecg_columns(ecg, fs, ends, null_counts)
    has_ppg = _PPG_CHANNEL in record.sig_name
    if has_ppg:
        ppg = record.p_signal[:, record.sig_name.index(_PPG_CHANNEL)]
        pulses = _detect_pulses(ppg, fs)
        columns["pulse_rate_bpm"] = _rate_bpm(
            pulses, ends, "pulse_rate_bpm", null_counts
        )
    else:
        columns["pulse_rate_bpm"] = np.full(n_seconds, np.nan)
    columns["spo2_pct"] = np.full(n_seconds, np.nan)
    for name in _VALID_RANGES:
        columns[name] = _null_out_of_range(columns[name], name, null_counts)

    tag = f"{recording.dataset}-{recording.name}"
    _LOGGER.info(
        "Replayed %d readings from lead %s, PPG %s, nulls %s",
        n_seconds,
        lead,
        has_ppg,
        null_counts,
    )
    return ReplayResult(
        patient_id=f"rec-{tag}",
        device_id=f"edge-{tag}",
        start_epoch_ms=start_epoch_ms,
        firmware=firmware,
        ecg_lead=lead,
        has_ppg=has_ppg,
        columns={k: v.astype(np.float32) for k, v in columns.items()},
        null_counts=null_counts,
    )


def write_replay(
    result: ReplayResult,
    out_dir: str | os.PathLike,
    batch_seconds: int | None = DEFAULT_BATCH_SECONDS,
    payload_file: bool = False,
) -> dict[str, pathlib.Path]:
    """Write a replay to files named after its device id.

    Args:
        result: The replay to write.
        out_dir: Output folder, created when missing.
        batch_seconds: Readings per VitalBatch; None writes no batch file.
        payload_file: Also write ``<device>.payloads``, single-object
            payloads each preceded by its 4-byte big-endian length.

    Returns:
        Output kind (``"readings"``, ``"batches"``, ``"payloads"``) to path.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"readings": out / f"{result.device_id}.readings.avro"}
    codec.write_container(
        paths["readings"], codec.VITAL_READING, result.readings()
    )
    if batch_seconds is not None:
        paths["batches"] = out / f"{result.device_id}.batches.avro"
        codec.write_container(
            paths["batches"], codec.VITAL_BATCH, result.batches(batch_seconds)
        )
    if payload_file:
        paths["payloads"] = out / f"{result.device_id}.payloads"
        write_framed(paths["payloads"], result.payloads())
    return paths


def _pick_lead(names: list[str], record_name: str) -> str:
    for lead in _ECG_LEADS:
        if lead in names:
            return lead
    raise ValueError(
        f"record {record_name} has no ECG lead among {_ECG_LEADS}; its "
        f"channels are {names}"
    )


def _fill_nan(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the signal with NaN runs interpolated, and the NaN mask.

    The filters in ``ecg_clean`` and ``ppg_clean`` spread NaN over the
    whole signal, so gaps are bridged and beats inside them dropped later.
    """
    missing = np.isnan(signal)
    if not missing.any():
        return signal, missing
    if missing.all():
        return np.zeros_like(signal), missing
    index = np.arange(len(signal))
    filled = signal.copy()
    filled[missing] = np.interp(
        index[missing], index[~missing], signal[~missing]
    )
    return filled, missing


def _ecg_columns(
    ecg: np.ndarray, fs: float, ends: np.ndarray, null_counts: dict
) -> dict[str, np.ndarray]:
    filled, missing = _fill_nan(ecg)
    beats = _detect_beats(filled, fs, missing, "neurokit")
    check = _detect_beats(filled, fs, missing, "pantompkins1985")
    rr_ms = np.diff(beats) * 1000.0
    rr_end_s = beats[1:]
    return {
        "heart_rate_bpm": _rate_bpm(beats, ends, "heart_rate_bpm", null_counts),
        "rr_interval_ms": _mean_rr_ms(rr_ms, rr_end_s, ends, null_counts),
        "rr_rmssd_ms": _rmssd_ms(rr_ms, rr_end_s, ends, null_counts),
        "signal_quality": _bsqi(beats, check, missing, fs, ends),
    }


def _detect_beats(filled, fs, missing, method) -> np.ndarray:
    # Each detector gets the cleaning its authors designed it for: on
    # record v202s, Pan-Tompkins after neurokit2's default cleaning finds
    # 53 of about 380 beats.
    cleaned = neurokit2.ecg_clean(filled, sampling_rate=fs, method=method)
    return _peak_times(neurokit2.ecg_peaks, cleaned, fs, missing, method)


def _detect_pulses(ppg: np.ndarray, fs: float) -> np.ndarray:
    filled, missing = _fill_nan(ppg)
    cleaned = neurokit2.ppg_clean(filled, sampling_rate=fs)
    return _peak_times(neurokit2.ppg_peaks, cleaned, fs, missing, "elgendi")


def _peak_times(detect, cleaned, fs, missing, method) -> np.ndarray:
    """Return peak times in seconds, without peaks on NaN samples."""
    _, info = detect(cleaned, sampling_rate=fs, method=method)
    key = "ECG_R_Peaks" if "ECG_R_Peaks" in info else "PPG_Peaks"
    peaks = np.asarray(info[key], dtype=np.int64)
    peaks = peaks[~missing[peaks]]
    return peaks / fs


def _window(times: np.ndarray, ends: np.ndarray, width: float):
    """Return index bounds [lo, hi) of the times in (end - width, end]."""
    lo = np.searchsorted(times, ends - width, side="right")
    hi = np.searchsorted(times, ends, side="right")
    return lo, hi


def _windowed_median(values, lo, hi) -> np.ndarray:
    """Return the median of values[lo:hi] per row; NaN for empty rows."""
    counts = hi - lo
    width = int(counts.max(initial=0))
    if width == 0:
        return np.full(len(lo), np.nan)
    index = lo[:, None] + np.arange(width)
    inside = index < hi[:, None]
    rows = np.where(inside, values[np.minimum(index, len(values) - 1)], np.inf)
    rows.sort(axis=1)
    low = rows[np.arange(len(lo)), np.maximum(counts - 1, 0) // 2]
    high = rows[np.arange(len(lo)), np.minimum(counts // 2, width - 1)]
    return np.where(counts > 0, (low + high) / 2.0, np.nan)


def _rate_bpm(beats, ends, name, null_counts) -> np.ndarray:
    """Return 60000 / median RR of the last 5 s, NaN with too few beats."""
    lo, hi = _window(beats[1:], ends, _RATE_WINDOW_SEC)
    median_rr_ms = _windowed_median(np.diff(beats) * 1000.0, lo, hi)
    recent_lo, recent_hi = _window(beats, ends, _MIN_BEATS_WINDOW_SEC)
    too_few = (recent_hi - recent_lo) < _MIN_BEATS
    _count(null_counts, f"{name}.too_few_beats", too_few)
    with np.errstate(divide="ignore"):
        rate = 60000.0 / median_rr_ms
    return np.where(too_few, np.nan, rate)


def _mean_rr_ms(rr_ms, rr_end_s, ends, null_counts) -> np.ndarray:
    lo, hi = _window(rr_end_s, ends, 1.0)
    sums = np.concatenate(([0.0], np.cumsum(rr_ms)))
    counts = hi - lo
    _count(null_counts, "rr_interval_ms.no_beats", counts == 0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, (sums[hi] - sums[lo]) / counts, np.nan)


def _rmssd_ms(rr_ms, rr_end_s, ends, null_counts) -> np.ndarray:
    lo, hi = _window(rr_end_s, ends, _RMSSD_WINDOW_SEC)
    # Difference k is rr[k + 1] - rr[k]; both intervals must be in the
    # window, so the window's differences are those with k in [lo, hi - 1).
    squares = np.concatenate(([0.0], np.cumsum(np.diff(rr_ms) ** 2)))
    diff_lo = np.minimum(lo, len(squares) - 1)
    diff_hi = np.maximum(hi - 1, diff_lo)
    counts = diff_hi - diff_lo
    enough = counts >= _MIN_RMSSD_DIFFERENCES
    _count(null_counts, "rr_rmssd_ms.too_few_beats", ~enough)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_square = (squares[diff_hi] - squares[diff_lo]) / counts
    return np.where(enough, np.sqrt(mean_square), np.nan)


def _bsqi(beats, check, missing, fs, ends) -> np.ndarray:
    """Return bSQI over the last 10 s times the fraction of valid samples."""
    matched = _matched(beats, check, _SQI_MATCH_TOLERANCE_SEC)
    lo, hi = _window(beats, ends, _SQI_WINDOW_SEC)
    check_lo, check_hi = _window(check, ends, _SQI_WINDOW_SEC)
    matched_sums = np.concatenate(([0], np.cumsum(matched)))
    n_check = check_hi - check_lo
    # A primary beat at the window's start can match a check beat just
    # outside it, so the match count is bounded by the check beats inside.
    n_matched = np.minimum(matched_sums[hi] - matched_sums[lo], n_check)
    n_union = (hi - lo) + n_check - n_matched
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_union > 0, n_matched / n_union, 1.0)
    return agreement * _valid_fraction(missing, fs, ends)


def _matched(beats, check, tolerance_s) -> np.ndarray:
    """Return whether each beat has a check beat within the tolerance."""
    if len(check) == 0:
        return np.zeros(len(beats), dtype=bool)
    after = np.searchsorted(check, beats).clip(0, len(check) - 1)
    before = (after - 1).clip(0, len(check) - 1)
    distance = np.minimum(
        np.abs(check[after] - beats), np.abs(check[before] - beats)
    )
    return distance <= tolerance_s


def _valid_fraction(missing, fs, ends) -> np.ndarray:
    valid = np.concatenate(([0], np.cumsum(~missing)))
    hi = np.minimum((ends * fs).astype(np.int64), len(missing))
    lo = np.maximum(((ends - _SQI_WINDOW_SEC) * fs).astype(np.int64), 0)
    return (valid[hi] - valid[lo]) / np.maximum(hi - lo, 1)


def _null_out_of_range(values, name, null_counts) -> np.ndarray:
    low, high = _VALID_RANGES[name]
    outside = np.isfinite(values) & ((values < low) | (values > high))
    _count(null_counts, f"{name}.out_of_range", outside)
    return np.where(outside, np.nan, values)


def _count(null_counts: dict, key: str, mask: np.ndarray) -> None:
    n = int(np.count_nonzero(mask))
    if n:
        null_counts[key] = null_counts.get(key, 0) + n


def _to_optional_list(column: np.ndarray) -> list:
    values = column.tolist()
    return [None if v != v else v for v in values]


def _batch_bounds(columns, batch_seconds) -> Iterator[tuple[int, int]]:
    """Yield [first, stop) reading ranges of the batches."""
    n = len(columns["signal_quality"])
    if n == 0:
        return
    present = np.stack(
        [~np.isnan(columns[name]) for name in _OPTIONAL_FIELDS], axis=1
    )
    pattern_changes = np.any(present[1:] != present[:-1], axis=1)
    starts = np.flatnonzero(pattern_changes) + 1
    grid = np.arange(batch_seconds, n, batch_seconds)
    starts = np.union1d(np.union1d(starts, grid), [0])
    stops = np.append(starts[1:], n)
    yield from zip(starts.tolist(), stops.tolist(), strict=False)
