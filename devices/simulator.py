"""Simulate a fleet of wearables with labelled episodes and delivery faults.

Each simulated patient wears one device that takes a reading every
``1 / rate_hz`` seconds. Vital signs start from a per-patient baseline
(heart rate 55-95 bpm, SpO2 95-99 %, RMSSD 20-60 ms) that drifts slowly as
an AR(1) process, with RR intervals consistent with the heart rate and a
signal-quality index that is mostly high. Everything is generated as numpy
arrays of shape (patients, slots), so 1000 patients x 10 min at 1 Hz take
well under a second to generate.

Injected clinical and sensor episodes (at most one per patient):
tachycardia, bradycardia, desaturation, irregular rhythm (AF-like: high
RMSSD and irregular RR), sensor off (no readings) and motion artefact (low
signal quality, noisy rates). Motion artefacts keep values inside the valid
ranges, so only the injected invalid readings are out of range.

Injected faults, each listed in the ground truth:

* Invalid readings: NaN heart rate, SpO2 250 %, heart rate 0 and an event
  time one day in the future.
* Clock skew: a constant event-time offset for a whole device.
* Delivery faults on delivery units, which are readings, or VitalBatch
  records when ``batch_size`` is set. Duplicates resend a unit,
  out-of-order units arrive after the next unit of the same device, and
  late chunks (a device's units of one time span) arrive minutes later.

Records come out in delivery order. Ground-truth episode times are seconds
of true time from the simulation start; the JSON-lines ground truth also
gives each episode in device event time, clock skew included.

Example::

    sim = simulate(SimulationConfig(n_patients=10, duration_s=60, seed=1))
    for record in sim.records():
        ...

Command line: ``python -m devices simulate --help``.
"""

import dataclasses
import json
import logging
import os
import pathlib
import struct
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.signal

from devices import labels
from schemas import codec

__all__ = [
    "DEFAULT_START_EPOCH_MS",
    "EPISODE_KINDS",
    "Fault",
    "Simulation",
    "SimulationConfig",
    "read_framed",
    "simulate",
    "write_framed",
    "write_simulation",
]

_LOGGER = logging.getLogger(__name__)

# 2026-01-01T00:00:00Z: a fixed default keeps outputs byte-identical.
DEFAULT_START_EPOCH_MS = 1_767_225_600_000
EPISODE_KINDS = (
    "tachycardia",
    "bradycardia",
    "desaturation",
    "irregular_rhythm",
    "sensor_off",
    "motion_artifact",
)
INVALID_KINDS = (
    "invalid_heart_rate_nan",
    "invalid_spo2_out_of_range",
    "invalid_heart_rate_zero",
    "invalid_future_timestamp",
)
_DAY_MS = 86_400_000
_FRAME_HEADER = struct.Struct(">I")
# Drift time constant and spread of the heart-rate baseline.
_DRIFT_TAU_SEC = 300.0
_DRIFT_STD_BPM = 4.0
# Episodes ramp in and out over this time, or a quarter of their length.
_EPISODE_RAMP_SEC = 10.0


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Settings of one simulation run. Episode probabilities are per patient.

    Fractions of delivery faults are of delivery units: readings, or
    batches when ``batch_size`` is set.
    """

    n_patients: int = 1000
    duration_s: float = 600.0
    rate_hz: float = 1.0
    seed: int = 0
    start_epoch_ms: int = DEFAULT_START_EPOCH_MS
    firmware: str = "sim-1"
    batch_size: int | None = None
    tachycardia_probability: float = 0.03
    bradycardia_probability: float = 0.03
    desaturation_probability: float = 0.03
    irregular_rhythm_probability: float = 0.03
    sensor_off_probability: float = 0.02
    motion_artifact_probability: float = 0.03
    episode_min_s: float = 30.0
    episode_max_s: float = 120.0
    duplicate_fraction: float = 0.01
    duplicate_max_delay_s: float = 5.0
    out_of_order_fraction: float = 0.01
    out_of_order_max_delay_s: float = 10.0
    late_device_fraction: float = 0.01
    late_chunk_s: float = 30.0
    late_delay_s: float = 300.0
    clock_skew_device_fraction: float = 0.01
    clock_skew_max_s: float = 120.0
    invalid_fraction: float = 0.001

    def __post_init__(self):
        interval_ms = 1000.0 / self.rate_hz if self.rate_hz > 0 else 0.0
        if not 10 <= interval_ms <= 60000:
            raise ValueError(
                f"rate_hz {self.rate_hz} gives an interval of "
                f"{interval_ms} ms; VitalBatch allows 10 to 60000 ms"
            )
        if self.n_patients < 1 or self.duration_s <= 0:
            raise ValueError("n_patients and duration_s must be positive")
        if sum(self.episode_probabilities()) > 1.0:
            raise ValueError("episode probabilities must sum to at most 1")
        if not 0 < self.episode_min_s <= self.episode_max_s:
            raise ValueError("need 0 < episode_min_s <= episode_max_s")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def interval_ms(self) -> int:
        return round(1000.0 / self.rate_hz)

    @property
    def n_slots(self) -> int:
        return int(self.duration_s * self.rate_hz)

    def episode_probabilities(self) -> tuple[float, ...]:
        """Return the probabilities in the order of ``EPISODE_KINDS``."""
        return tuple(
            getattr(self, f"{kind}_probability") for kind in EPISODE_KINDS
        )


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: ``"duplicate"``, ``"out_of_order"``, ``"late_delivery"``,
            ``"clock_skew"`` or one of ``INVALID_KINDS``.
        patient_id: Patient of the device.
        device_id: Device that sent the affected readings.
        first_sequence: First affected sequence number; None for clock
            skew, which affects the whole device.
        last_sequence: Last affected sequence number, inclusive.
        delay_s: Extra delivery delay for delivery faults.
        offset_ms: Event-time offset for clock skew.
    """

    kind: str
    patient_id: str
    device_id: str
    first_sequence: int | None = None
    last_sequence: int | None = None
    delay_s: float | None = None
    offset_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class Simulation:
    """A simulated run: readings, delivery order and ground truth.

    Attributes:
        config: The settings that produced it.
        columns: One entry per reading taken, sorted by device and
            sequence: ``patient_index``, ``sequence``, ``slot`` (true time
            in reading intervals), ``event_time_ms`` and the vital fields.
        unit_first: Index into ``columns`` of each delivery unit's first
            reading; units are readings or batches.
        unit_size: Number of readings in each unit.
        delivery_units: Unit indices in delivery order; a duplicated unit
            appears twice.
        delivery_time_s: Delivery time of each entry of
            ``delivery_units``, seconds of true time from the start.
        episodes: Injected episodes, ``record`` being the patient id.
        faults: Injected faults.
    """

    config: SimulationConfig
    columns: dict[str, np.ndarray]
    unit_first: np.ndarray
    unit_size: np.ndarray
    delivery_units: np.ndarray
    delivery_time_s: np.ndarray
    episodes: list[labels.Episode]
    faults: list[Fault]

    @property
    def kind(self) -> str:
        """Return the record kind: ``codec.VITAL_READING`` or ``_BATCH``."""
        if self.config.batch_size is None:
            return codec.VITAL_READING
        return codec.VITAL_BATCH

    def records(self) -> Iterator[dict]:
        """Yield the records as dicts in delivery order."""
        fields = _record_lists(self.columns)
        first = self.unit_first.tolist()
        size = self.unit_size.tolist()
        build = _reading if self.config.batch_size is None else _batch
        for unit in self.delivery_units.tolist():
            yield build(fields, first[unit], size[unit], self.config)

    def payloads(self) -> Iterator[bytes]:
        """Yield the records as single-object payloads in delivery order."""
        for record in self.records():
            yield codec.encode_record(self.kind, record)

    def ground_truth_rows(self) -> Iterator[dict]:
        """Yield ground-truth rows: episodes first, then faults."""
        skew = _skew_by_patient(self.faults)
        start_ms = self.config.start_epoch_ms
        for episode in self.episodes:
            offset = skew.get(episode.record, 0)
            event_start, event_end = episode.event_time_ms(start_ms + offset)
            yield {
                "category": "episode",
                "patient_id": episode.record,
                "device_id": _device_id_of(episode.record),
                "kind": episode.kind,
                "start_s": episode.start_s,
                "end_s": episode.end_s,
                "event_start_ms": event_start,
                "event_end_ms": event_end,
            }
        for fault in self.faults:
            yield {"category": "fault", **dataclasses.asdict(fault)}


def simulate(config: SimulationConfig) -> Simulation:
    """Generate readings, episodes and faults for ``config``.

    The result depends only on ``config``, so the same seed gives the
    same readings, delivery order and ground truth.

    Raises:
        ValueError: When there are too few eligible units for the
            requested out-of-order fraction.
    """
    rng = np.random.default_rng(config.seed)
    n_slots = config.n_slots
    episode_kind, start, end = _draw_episodes(rng, config, n_slots)
    vitals, present = _generate_vitals(rng, config, episode_kind, start, end)
    columns = _flatten(vitals, present)
    faults = _apply_clock_skew(rng, config, columns)
    faults += _inject_invalid(rng, config, columns)
    unit_first, unit_size = _delivery_units(columns, config.batch_size)
    delivery = _Delivery(rng, config, columns, unit_first, unit_size)
    faults += delivery.apply_faults()
    order_units, order_time = delivery.order()
    episodes = _episode_labels(config, episode_kind, start, end)
    _LOGGER.info(
        "Simulated %d patients x %d slots: %d readings, %d deliveries, "
        "%d episodes, %d faults",
        config.n_patients,
        n_slots,
        len(columns["sequence"]),
        len(order_units),
        len(episodes),
        len(faults),
    )
    return Simulation(
        config,
        columns,
        unit_first,
        unit_size,
        order_units,
        order_time,
        episodes,
        faults,
    )


def write_simulation(
    sim: Simulation, out_dir: str | os.PathLike, payload_file: bool = False
) -> dict[str, pathlib.Path]:
    """Write records (Avro container) and ground truth (JSON lines).

    Args:
        sim: The simulation to write.
        out_dir: Output folder, created when missing.
        payload_file: Also write the records as framed single-object
            payloads, see ``write_framed``.

    Returns:
        Output kind (``"records"``, ``"ground_truth"``, ``"payloads"``) to
        path.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "readings" if sim.kind == codec.VITAL_READING else "batches"
    paths = {
        "records": out / f"{stem}.avro",
        "ground_truth": out / "ground_truth.jsonl",
    }
    codec.write_container(paths["records"], sim.kind, sim.records())
    with open(paths["ground_truth"], "w") as table:
        for row in sim.ground_truth_rows():
            table.write(json.dumps(row, allow_nan=False) + "\n")
    if payload_file:
        paths["payloads"] = out / f"{stem}.payloads"
        write_framed(paths["payloads"], sim.payloads())
    return paths


def write_framed(path: str | os.PathLike, payloads: Iterable[bytes]) -> int:
    """Write payloads, each preceded by its length as 4-byte big-endian.

    Returns:
        The number of payloads written.
    """
    count = 0
    with open(path, "wb") as out:
        for payload in payloads:
            out.write(_FRAME_HEADER.pack(len(payload)))
            out.write(payload)
            count += 1
    return count


def read_framed(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the payloads of a file written by ``write_framed``.

    Raises:
        ValueError: When the file ends inside a frame.
    """
    with open(path, "rb") as stream:
        while header := stream.read(_FRAME_HEADER.size):
            if len(header) < _FRAME_HEADER.size:
                raise ValueError(f"{path}: truncated frame header")
            (size,) = _FRAME_HEADER.unpack(header)
            payload = stream.read(size)
            if len(payload) < size:
                raise ValueError(f"{path}: frame of {size} bytes is truncated")
            yield payload


def _patient_id(index: int) -> str:
    return f"sim-p{index:05d}"


def _device_id(index: int) -> str:
    return f"sim-d{index:05d}"


def _device_id_of(patient_id: str) -> str:
    return "sim-d" + patient_id.removeprefix("sim-p")


def _draw_episodes(rng, config, n_slots):
    """Draw at most one episode per patient.

    Returns:
        (kind index or -1 per patient, start slot, end slot exclusive).
    """
    probabilities = np.array(config.episode_probabilities())
    choices = np.append(probabilities, 1.0 - probabilities.sum())
    kind = rng.choice(len(choices), size=config.n_patients, p=choices)
    kind = np.where(kind == len(EPISODE_KINDS), -1, kind)
    duration_s = rng.uniform(
        config.episode_min_s, config.episode_max_s, config.n_patients
    )
    length = np.minimum(np.round(duration_s * config.rate_hz), n_slots)
    start = np.floor(rng.uniform(0, 1, config.n_patients) * (n_slots - length))
    return kind, start.astype(np.int64), (start + length).astype(np.int64)


def _envelope(rate_hz, start, end, n_slots) -> np.ndarray:
    """Return a (patients, slots) trapezoid, 1 inside an episode's plateau."""
    slots = np.arange(n_slots)[None, :]
    ramp = np.maximum(
        np.minimum(_EPISODE_RAMP_SEC * rate_hz, (end - start) / 4.0), 1.0
    )[:, None]
    rising = (slots - start[:, None] + 1) / ramp
    falling = (end[:, None] - slots) / ramp
    return np.clip(np.minimum(rising, falling), 0.0, 1.0)


def _generate_vitals(rng, config, episode_kind, start, end):
    """Return (vital-field arrays of shape (patients, slots), present)."""
    shape = (config.n_patients, config.n_slots)
    heart_rate = _baseline_heart_rate(rng, config, shape)
    spo2 = rng.uniform(95.0, 99.0, shape[0])[:, None] + rng.normal(
        0.0, 0.3, shape
    )
    rmssd = rng.uniform(20.0, 60.0, shape[0])[:, None] * rng.lognormal(
        0.0, 0.1, shape
    )
    quality = rng.beta(15.0, 1.2, shape)
    rr_jitter = rng.normal(0.0, 0.02, shape)
    envelope = _envelope(config.rate_hz, start, end, config.n_slots)
    inside = envelope > 0

    def rows(name):
        return (episode_kind == EPISODE_KINDS.index(name))[:, None]

    def toward(values, low, high, weight):
        target = rng.uniform(low, high, shape[0])[:, None]
        return values + (target - values) * weight

    heart_rate = toward(
        heart_rate, 130.0, 170.0, envelope * rows("tachycardia")
    )
    rmssd = rmssd * (1.0 - 0.6 * envelope * rows("tachycardia"))
    heart_rate = toward(heart_rate, 32.0, 45.0, envelope * rows("bradycardia"))
    spo2 = toward(spo2, 80.0, 88.0, envelope * rows("desaturation"))

    # AF-like: faster, irregular RR and a high RMSSD.
    irregular = envelope * rows("irregular_rhythm")
    heart_rate = heart_rate + rng.uniform(10.0, 30.0, shape[0])[:, None] * (
        irregular
    )
    heart_rate = heart_rate * (1.0 + rng.normal(0.0, 0.05, shape) * irregular)
    rmssd = toward(rmssd, 100.0, 250.0, irregular)
    rr_jitter = rr_jitter + rng.normal(0.0, 0.15, shape) * irregular

    motion = inside & rows("motion_artifact")
    quality = np.where(motion, rng.uniform(0.05, 0.4, shape), quality)
    heart_rate = heart_rate + rng.normal(0.0, 15.0, shape) * motion
    pulse_rate = heart_rate + rng.normal(0.0, 1.5, shape)
    pulse_rate = pulse_rate + rng.normal(0.0, 20.0, shape) * motion
    spo2 = spo2 + rng.normal(0.0, 2.0, shape) * motion

    # Noisy values stay valid, so only injected invalid readings are not.
    heart_rate = np.clip(heart_rate, 30.0, 250.0)
    pulse_rate = np.clip(pulse_rate, 30.0, 250.0)
    spo2 = np.clip(spo2, 60.0, 100.0)
    rr_interval = np.clip(60000.0 / heart_rate * (1.0 + rr_jitter), 240, 2000)
    vitals = {
        "heart_rate_bpm": heart_rate,
        "spo2_pct": spo2,
        "rr_interval_ms": rr_interval,
        "signal_quality": quality,
        "pulse_rate_bpm": pulse_rate,
        "rr_rmssd_ms": rmssd,
    }
    present = ~(inside & rows("sensor_off"))
    return vitals, present


def _baseline_heart_rate(rng, config, shape) -> np.ndarray:
    """Return per-patient baselines with AR(1) drift and white noise."""
    baseline = rng.uniform(55.0, 95.0, shape[0])[:, None]
    pole = np.exp(-1.0 / (_DRIFT_TAU_SEC * config.rate_hz))
    innovation = _DRIFT_STD_BPM * np.sqrt(1.0 - pole**2)
    initial = rng.normal(0.0, _DRIFT_STD_BPM, (shape[0], 1)) * pole
    drift, _ = scipy.signal.lfilter(
        [1.0],
        [1.0, -pole],
        rng.normal(0.0, innovation, shape),
        axis=1,
        zi=initial,
    )
    return baseline + drift + rng.normal(0.0, 1.0, shape)


def _flatten(vitals, present) -> dict[str, np.ndarray]:
    """Return one entry per reading taken, sorted by device and sequence."""
    patient, slot = np.nonzero(present)
    per_patient = np.bincount(patient, minlength=present.shape[0])
    offsets = np.concatenate(([0], np.cumsum(per_patient)))[:-1]
    columns = {
        "patient_index": patient,
        "slot": slot,
        "sequence": np.arange(len(patient)) - offsets[patient],
    }
    for name, values in vitals.items():
        columns[name] = values[patient, slot].astype(np.float32)
    return columns


def _pick(rng, population: int, fraction: float, fault_name: str) -> np.ndarray:
    """Return round(fraction * population) distinct sorted indices."""
    count = round(fraction * population)
    if not 0 <= count <= population:
        raise ValueError(
            f"{fault_name} fraction {fraction} is outside 0 to 1 for "
            f"{population} candidates"
        )
    return np.sort(rng.choice(population, size=count, replace=False))


def _apply_clock_skew(rng, config, columns) -> list[Fault]:
    skewed = _pick(
        rng, config.n_patients, config.clock_skew_device_fraction, "clock skew"
    )
    magnitude = rng.uniform(0.1, 1.0, len(skewed)) * config.clock_skew_max_s
    sign = rng.choice([-1.0, 1.0], len(skewed))
    offsets = np.zeros(config.n_patients, dtype=np.int64)
    offsets[skewed] = np.round(sign * magnitude * 1000.0).astype(np.int64)
    patient = columns["patient_index"]
    columns["event_time_ms"] = (
        config.start_epoch_ms
        + columns["slot"] * config.interval_ms
        + offsets[patient]
    )
    return [
        Fault(
            "clock_skew",
            _patient_id(p),
            _device_id(p),
            offset_ms=int(offsets[p]),
        )
        for p in skewed.tolist()
    ]


def _inject_invalid(rng, config, columns) -> list[Fault]:
    n_readings = len(columns["sequence"])
    chosen = _pick(rng, n_readings, config.invalid_fraction, "invalid")
    kinds = rng.integers(len(INVALID_KINDS), size=len(chosen))
    changes = (
        ("heart_rate_bpm", np.nan),
        ("spo2_pct", 250.0),
        ("heart_rate_bpm", 0.0),
    )
    for kind_index, (field, value) in enumerate(changes):
        columns[field][chosen[kinds == kind_index]] = value
    future = chosen[kinds == INVALID_KINDS.index("invalid_future_timestamp")]
    columns["event_time_ms"][future] += _DAY_MS
    columns["invalid_kind"] = np.full(n_readings, -1, dtype=np.int8)
    columns["invalid_kind"][chosen] = kinds
    patients = columns["patient_index"][chosen].tolist()
    sequences = columns["sequence"][chosen].tolist()
    return [
        Fault(INVALID_KINDS[k], _patient_id(p), _device_id(p), s, s)
        for k, p, s in zip(kinds.tolist(), patients, sequences, strict=False)
    ]


def _delivery_units(columns, batch_size):
    """Return (first reading, size) of each delivery unit.

    A batch holds consecutive readings of one device, at most
    ``batch_size``, and ends at a time gap. A reading with a future event
    time travels alone, because a batch's event times must be evenly
    spaced from its start time.
    """
    n = len(columns["sequence"])
    if batch_size is None:
        return np.arange(n), np.ones(n, dtype=np.int64)
    patient = columns["patient_index"]
    slot = columns["slot"]
    run_break = np.ones(n, dtype=bool)
    run_break[1:] = (patient[1:] != patient[:-1]) | (slot[1:] != slot[:-1] + 1)
    run_start = np.maximum.accumulate(np.where(run_break, np.arange(n), 0))
    new_unit = ((np.arange(n) - run_start) % batch_size) == 0
    future = INVALID_KINDS.index("invalid_future_timestamp")
    alone = columns["invalid_kind"] == future
    new_unit |= alone
    new_unit[1:] |= alone[:-1]
    first = np.flatnonzero(new_unit)
    size = np.diff(np.append(first, n))
    return first, size


class _Delivery:
    """Delivery times of the units, with the delivery faults applied.

    A unit is sent when its last reading is taken. Faults are applied in
    a fixed order (late chunks, reordering, duplicates) so that a reordered
    unit's successor is never itself moved.
    """

    def __init__(self, rng, config, columns, unit_first, unit_size):
        self._rng = rng
        self._config = config
        last = unit_first + unit_size - 1
        self._patient = columns["patient_index"][unit_first]
        self._first_slot = columns["slot"][unit_first]
        self._last_slot = columns["slot"][last]
        self._first_sequence = columns["sequence"][unit_first]
        self._last_sequence = columns["sequence"][last]
        self._time_s = (self._last_slot + 1) / config.rate_hz
        self._late = np.zeros(len(unit_first), dtype=bool)
        self._copies = np.empty(0, dtype=np.int64)
        self._copy_time_s = np.empty(0)

    def apply_faults(self) -> list[Fault]:
        return self._delay_chunks() + self._reorder() + self._duplicate()

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (unit indices, delivery times) in delivery order."""
        units = np.concatenate((np.arange(len(self._time_s)), self._copies))
        times = np.concatenate((self._time_s, self._copy_time_s))
        order = np.lexsort((units, times))
        return units[order], times[order]

    def _fault(self, kind, units, delay_s) -> list[Fault]:
        patients = self._patient[units].tolist()
        first = self._first_sequence[units].tolist()
        last = self._last_sequence[units].tolist()
        return [
            Fault(kind, _patient_id(p), _device_id(p), f, s, float(d))
            for p, f, s, d in zip(
                patients, first, last, delay_s.tolist(), strict=False
            )
        ]

    def _delay_chunks(self) -> list[Fault]:
        config = self._config
        devices = _pick(
            self._rng,
            config.n_patients,
            config.late_device_fraction,
            "late delivery",
        )
        chunk_slots = max(round(config.late_chunk_s * config.rate_hz), 1)
        chunk_start = np.full(config.n_patients, -1, dtype=np.int64)
        latest_start = max(config.n_slots - chunk_slots, 0)
        chunk_start[devices] = self._rng.integers(
            0, latest_start + 1, len(devices)
        )
        start = chunk_start[self._patient]
        self._late = (
            (start >= 0)
            & (self._first_slot >= start)
            & (self._first_slot < start + chunk_slots)
        )
        self._time_s[self._late] += config.late_delay_s
        faults = []
        late_units = np.flatnonzero(self._late)
        for units in np.split(
            late_units,
            np.flatnonzero(np.diff(self._patient[late_units])) + 1,
        ):
            if len(units):
                chunk = self._fault("late_delivery", units[:1], np.array([0]))
                faults.append(
                    dataclasses.replace(
                        chunk[0],
                        last_sequence=int(self._last_sequence[units[-1]]),
                        delay_s=float(config.late_delay_s),
                    )
                )
        return faults

    def _reorder(self) -> list[Fault]:
        """Deliver chosen units after the next unit of the same device.

        Only units at an even position within their device are eligible,
        and only when the next unit follows without a time gap and neither
        is late. So a reordered unit's successor stays in place and every
        injected reordering shows as exactly one unit out of order.
        """
        n = len(self._time_s)
        has_next = np.zeros(n, dtype=bool)
        has_next[:-1] = (
            (self._patient[1:] == self._patient[:-1])
            & (self._first_slot[1:] == self._last_slot[:-1] + 1)
            & ~self._late[1:]
            & ~self._late[:-1]
        )
        device_start = np.ones(n, dtype=bool)
        device_start[1:] = self._patient[1:] != self._patient[:-1]
        first_of_device = np.maximum.accumulate(
            np.where(device_start, np.arange(n), 0)
        )
        even = (np.arange(n) - first_of_device) % 2 == 0
        candidates = np.flatnonzero(has_next & even)
        count = round(self._config.out_of_order_fraction * n)
        if count > len(candidates):
            raise ValueError(
                f"out_of_order_fraction {self._config.out_of_order_fraction}"
                f" needs {count} units but only {len(candidates)} can be "
                "reordered; lower it below about 0.4"
            )
        chosen = np.sort(self._rng.choice(candidates, count, replace=False))
        new_time = self._time_s[chosen + 1] + self._rng.uniform(
            1e-3, self._config.out_of_order_max_delay_s, count
        )
        delay_s = new_time - self._time_s[chosen]
        self._time_s[chosen] = new_time
        return self._fault("out_of_order", chosen, delay_s)

    def _duplicate(self) -> list[Fault]:
        n = len(self._time_s)
        chosen = _pick(
            self._rng, n, self._config.duplicate_fraction, "duplicate"
        )
        delay_s = self._rng.uniform(
            1e-3, self._config.duplicate_max_delay_s, len(chosen)
        )
        self._copies = chosen
        self._copy_time_s = self._time_s[chosen] + delay_s
        return self._fault("duplicate", chosen, delay_s)


_VITAL_FIELDS = (
    "heart_rate_bpm",
    "spo2_pct",
    "rr_interval_ms",
    "signal_quality",
    "pulse_rate_bpm",
    "rr_rmssd_ms",
)


def _record_lists(columns) -> dict[str, list]:
    """Return the columns as Python lists, for fast per-record access."""
    n_patients = int(columns["patient_index"].max(initial=-1)) + 1
    fields = {
        name: columns[name].tolist()
        for name in ("patient_index", "sequence", "event_time_ms")
    }
    for name in _VITAL_FIELDS:
        fields[name] = columns[name].tolist()
    fields["patient_ids"] = [_patient_id(p) for p in range(n_patients)]
    fields["device_ids"] = [_device_id(p) for p in range(n_patients)]
    return fields


def _reading(fields, first, size, config) -> dict:
    patient = fields["patient_index"][first]
    record = {
        "patient_id": fields["patient_ids"][patient],
        "device_id": fields["device_ids"][patient],
        "sequence": fields["sequence"][first],
        "event_time": fields["event_time_ms"][first],
        "firmware": config.firmware,
    }
    for name in _VITAL_FIELDS:
        record[name] = fields[name][first]
    return record


def _batch(fields, first, size, config) -> dict:
    patient = fields["patient_index"][first]
    stop = first + size
    record = {
        "patient_id": fields["patient_ids"][patient],
        "device_id": fields["device_ids"][patient],
        "first_sequence": fields["sequence"][first],
        "start_time": fields["event_time_ms"][first],
        "interval_ms": config.interval_ms,
        "firmware": config.firmware,
    }
    for name in _VITAL_FIELDS:
        record[name] = fields[name][first:stop]
    return record


def _skew_by_patient(faults: list[Fault]) -> dict[str, int]:
    return {
        fault.patient_id: fault.offset_ms
        for fault in faults
        if fault.kind == "clock_skew"
    }


def _episode_labels(config, episode_kind, start, end) -> list[labels.Episode]:
    patients = np.flatnonzero(episode_kind >= 0).tolist()
    return [
        labels.Episode(
            record=_patient_id(p),
            kind=EPISODE_KINDS[episode_kind[p]],
            start_s=float(start[p] / config.rate_hz),
            end_s=float(end[p] / config.rate_hz),
            label_source="simulator",
        )
        for p in patients
    ]
