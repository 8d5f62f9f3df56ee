"""Tests for the wearable fleet simulator."""

import dataclasses
import json
import math

import numpy as np
import pytest

from devices import simulator
from schemas import codec

_NO_FAULTS = dict(
    duplicate_fraction=0.0,
    out_of_order_fraction=0.0,
    late_device_fraction=0.0,
    clock_skew_device_fraction=0.0,
    invalid_fraction=0.0,
)
_NO_EPISODES = {f"{k}_probability": 0.0 for k in simulator.EPISODE_KINDS}


def _config(**overrides):
    settings = dict(n_patients=40, duration_s=300.0, seed=3)
    settings.update(overrides)
    return simulator.SimulationConfig(**settings)


def _only(kind):
    probabilities = dict(_NO_EPISODES, **{f"{kind}_probability": 1.0})
    return _config(
        episode_min_s=60.0, episode_max_s=120.0, **probabilities, **_NO_FAULTS
    )


def _episode_masks(sim):
    """Return (inside plateau, outside episode) masks per reading."""
    columns = sim.columns
    rate = sim.config.rate_hz
    start = np.zeros(sim.config.n_patients)
    end = np.zeros(sim.config.n_patients)
    for episode in sim.episodes:
        index = int(episode.record.removeprefix("sim-p"))
        start[index] = episode.start_s * rate
        end[index] = episode.end_s * rate
    patient = columns["patient_index"]
    slot = columns["slot"]
    ramp = simulator._EPISODE_RAMP_SEC * rate
    plateau = (slot >= start[patient] + ramp) & (slot < end[patient] - ramp)
    outside = (slot < start[patient]) | (slot >= end[patient])
    return plateau, outside


def _mean_by_patient(values, mask, patient, n):
    sums = np.bincount(patient[mask], values[mask], minlength=n)
    return sums / np.bincount(patient[mask], minlength=n)


def test_same_seed_same_output():
    first = simulator.simulate(_config())
    second = simulator.simulate(_config())
    for name, values in first.columns.items():
        np.testing.assert_array_equal(values, second.columns[name])
    np.testing.assert_array_equal(first.delivery_units, second.delivery_units)
    assert first.faults == second.faults
    assert first.episodes == second.episodes


def test_other_seed_other_output():
    first = simulator.simulate(_config())
    other = simulator.simulate(_config(seed=4))
    assert not np.array_equal(
        first.columns["heart_rate_bpm"], other.columns["heart_rate_bpm"]
    )


def test_baselines_realistic():
    sim = simulator.simulate(_config(**_NO_EPISODES, **_NO_FAULTS))
    columns = sim.columns
    assert 55.0 <= np.median(columns["heart_rate_bpm"]) <= 95.0
    assert ((columns["spo2_pct"] >= 93.0) & (columns["spo2_pct"] <= 100)).all()
    assert 15.0 <= np.median(columns["rr_rmssd_ms"]) <= 65.0
    assert np.median(columns["signal_quality"]) > 0.85
    expected_rr = 60000.0 / columns["heart_rate_bpm"]
    relative = np.abs(columns["rr_interval_ms"] / expected_rr - 1.0)
    assert np.median(relative) < 0.05


@pytest.mark.parametrize(
    "kind, field, direction",
    [
        ("tachycardia", "heart_rate_bpm", 1),
        ("bradycardia", "heart_rate_bpm", -1),
        ("desaturation", "spo2_pct", -1),
        ("irregular_rhythm", "rr_rmssd_ms", 1),
        ("motion_artifact", "signal_quality", -1),
    ],
)
def test_episode_shifts_vital(kind, field, direction):
    sim = simulator.simulate(_only(kind))
    assert len(sim.episodes) == sim.config.n_patients
    assert {e.kind for e in sim.episodes} == {kind}
    plateau, outside = _episode_masks(sim)
    values = sim.columns[field].astype(np.float64)
    patient = sim.columns["patient_index"]
    n = sim.config.n_patients
    shift = _mean_by_patient(values, plateau, patient, n) - _mean_by_patient(
        values, outside, patient, n
    )
    # Bradycardia targets 32-45 bpm, so a 55 bpm baseline moves by ~10.
    threshold = {
        "tachycardia": 20.0,
        "bradycardia": 8.0,
        "desaturation": 5.0,
        "irregular_rhythm": 40.0,
        "motion_artifact": 0.4,
    }[kind]
    assert (direction * shift > threshold).all()


def test_rate_episodes_reach_target():
    tachycardia = simulator.simulate(_only("tachycardia"))
    plateau, _ = _episode_masks(tachycardia)
    assert tachycardia.columns["heart_rate_bpm"][plateau].min() > 110.0
    bradycardia = simulator.simulate(_only("bradycardia"))
    plateau, _ = _episode_masks(bradycardia)
    assert bradycardia.columns["heart_rate_bpm"][plateau].max() < 55.0


def test_irregular_rhythm_rr_is_irregular():
    sim = simulator.simulate(_only("irregular_rhythm"))
    plateau, outside = _episode_masks(sim)
    rr = sim.columns["rr_interval_ms"]
    expected = 60000.0 / sim.columns["heart_rate_bpm"]
    spread = np.abs(rr / expected - 1.0)
    assert np.median(spread[plateau]) > 3 * np.median(spread[outside])


def test_sensor_off_has_no_readings():
    sim = simulator.simulate(_only("sensor_off"))
    plateau, _ = _episode_masks(sim)
    assert not plateau.any()
    n_slots = sim.config.n_slots * sim.config.n_patients
    missing = sum(e.end_s - e.start_s for e in sim.episodes)
    assert len(sim.columns["slot"]) == n_slots - round(missing)
    # Sequences stay contiguous: the device takes no reading while off.
    patient = sim.columns["patient_index"]
    steps = np.diff(sim.columns["sequence"])[np.diff(patient) == 0]
    assert (steps == 1).all()


def _deliveries(sim):
    """Return (patient, sequence) per delivery in delivery order."""
    first = sim.unit_first[sim.delivery_units]
    return sim.columns["patient_index"][first], sim.columns["sequence"][first]


def _count_out_of_order(patient, sequence):
    """Count deliveries whose sequence is below an earlier one's."""
    highest = {}
    count = 0
    for p, s in zip(patient.tolist(), sequence.tolist(), strict=True):
        if s < highest.get(p, -1):
            count += 1
        highest[p] = max(highest.get(p, -1), s)
    return count


def test_duplicate_count_matches_config():
    config = dataclasses.replace(_config(**_NO_FAULTS), duplicate_fraction=0.05)
    sim = simulator.simulate(config)
    n_units = len(sim.unit_first)
    expected = round(0.05 * n_units)
    assert len(sim.delivery_units) == n_units + expected
    patient, sequence = _deliveries(sim)
    keys = patient.astype(np.int64) * 1_000_000 + sequence
    _, counts = np.unique(keys, return_counts=True)
    assert (counts == 2).sum() == expected
    assert counts.max() == 2
    faults = [f for f in sim.faults if f.kind == "duplicate"]
    assert len(faults) == expected


def test_out_of_order_count_matches_config():
    config = dataclasses.replace(
        _config(**_NO_FAULTS), out_of_order_fraction=0.05
    )
    sim = simulator.simulate(config)
    expected = round(0.05 * len(sim.unit_first))
    assert _count_out_of_order(*_deliveries(sim)) == expected
    faults = [f for f in sim.faults if f.kind == "out_of_order"]
    assert len(faults) == expected


def test_no_faults_means_in_order():
    sim = simulator.simulate(_config(**_NO_FAULTS))
    assert _count_out_of_order(*_deliveries(sim)) == 0
    assert sim.faults == []


def test_late_chunk_delivered_late():
    config = dataclasses.replace(
        _config(**_NO_FAULTS, **_NO_EPISODES), late_device_fraction=0.1
    )
    sim = simulator.simulate(config)
    faults = [f for f in sim.faults if f.kind == "late_delivery"]
    assert len(faults) == 4
    patient, sequence = _deliveries(sim)
    slot = sim.columns["slot"][sim.unit_first[sim.delivery_units]]
    lateness = sim.delivery_time_s - (slot + 1) / config.rate_hz
    for fault in faults:
        index = int(fault.patient_id.removeprefix("sim-p"))
        chunk = (
            (patient == index)
            & (sequence >= fault.first_sequence)
            & (sequence <= fault.last_sequence)
        )
        assert chunk.sum() == config.late_chunk_s
        np.testing.assert_allclose(lateness[chunk], config.late_delay_s)
    assert (lateness >= 0).all()


def test_clock_skew_offsets_event_time():
    config = dataclasses.replace(
        _config(**_NO_FAULTS), clock_skew_device_fraction=0.25
    )
    sim = simulator.simulate(config)
    faults = [f for f in sim.faults if f.kind == "clock_skew"]
    assert len(faults) == 10
    columns = sim.columns
    true_ms = config.start_epoch_ms + columns["slot"] * config.interval_ms
    offset = columns["event_time_ms"] - true_ms
    for fault in faults:
        index = int(fault.patient_id.removeprefix("sim-p"))
        mine = columns["patient_index"] == index
        assert fault.offset_ms != 0
        assert abs(fault.offset_ms) <= config.clock_skew_max_s * 1000
        assert (offset[mine] == fault.offset_ms).all()
    skewed = np.isin(
        columns["patient_index"],
        [int(f.patient_id.removeprefix("sim-p")) for f in faults],
    )
    assert (offset[~skewed] == 0).all()


def test_invalid_readings_present_and_labelled():
    config = dataclasses.replace(_config(**_NO_FAULTS), invalid_fraction=0.01)
    sim = simulator.simulate(config)
    columns = sim.columns
    invalid = (
        np.isnan(columns["heart_rate_bpm"])
        | (columns["heart_rate_bpm"] == 0.0)
        | (columns["spo2_pct"] > 100.0)
        | (columns["event_time_ms"] > config.start_epoch_ms + 86_400_000)
    )
    faults = [f for f in sim.faults if f.kind.startswith("invalid_")]
    assert len(faults) == round(0.01 * len(columns["sequence"]))
    assert invalid.sum() == len(faults)
    assert {f.kind for f in faults} == set(simulator.INVALID_KINDS)
    labelled = {(f.patient_id, f.first_sequence) for f in faults}
    found = {
        (f"sim-p{p:05d}", s)
        for p, s in zip(
            columns["patient_index"][invalid].tolist(),
            columns["sequence"][invalid].tolist(),
            strict=True,
        )
    }
    assert found == labelled


def test_readings_round_trip_through_avro(tmp_path):
    sim = simulator.simulate(_config(n_patients=5, duration_s=60.0))
    paths = simulator.write_simulation(sim, tmp_path)
    records = list(codec.read_container(paths["records"]))
    assert len(records) == len(sim.delivery_units)
    expected = list(sim.records())
    for record, want in zip(records, expected, strict=True):
        assert record["device_id"] == want["device_id"]
        assert record["sequence"] == want["sequence"]
        millis = round(record["event_time"].timestamp() * 1000)
        assert millis == want["event_time"]
        if not math.isnan(want["heart_rate_bpm"]):
            assert record["heart_rate_bpm"] == pytest.approx(
                want["heart_rate_bpm"]
            )
    rows = [json.loads(line) for line in open(paths["ground_truth"])]
    assert len(rows) == len(sim.episodes) + len(sim.faults)


def test_batches_cover_every_reading(tmp_path):
    config = _config(n_patients=10, batch_size=30, invalid_fraction=0.01)
    sim = simulator.simulate(config)
    assert sim.kind == codec.VITAL_BATCH
    paths = simulator.write_simulation(sim, tmp_path)
    batches = list(codec.read_container(paths["records"]))
    assert len(batches) == len(sim.delivery_units)
    unique = {(b["device_id"], b["first_sequence"]): b for b in batches}
    covered = sum(len(b["signal_quality"]) for b in unique.values())
    assert covered == len(sim.columns["sequence"])
    assert max(len(b["heart_rate_bpm"]) for b in batches) == 30
    for batch in unique.values():
        size = len(batch["signal_quality"])
        assert batch["interval_ms"] == 1000
        for name in ("heart_rate_bpm", "spo2_pct", "rr_rmssd_ms"):
            assert len(batch[name]) == size


def test_future_reading_travels_alone():
    config = _config(n_patients=10, batch_size=30, invalid_fraction=0.02)
    sim = simulator.simulate(config)
    future = simulator.INVALID_KINDS.index("invalid_future_timestamp")
    is_future = sim.columns["invalid_kind"] == future
    assert is_future.any()
    first = sim.unit_first.tolist()
    sizes = dict(zip(first, sim.unit_size.tolist(), strict=True))
    for index in np.flatnonzero(is_future).tolist():
        assert sizes.get(index) == 1


def test_payloads_decode(tmp_path):
    sim = simulator.simulate(_config(n_patients=2, duration_s=20.0))
    path = tmp_path / "payloads"
    written = simulator.write_framed(path, sim.payloads())
    decoded = [codec.decode_payload(p) for p in simulator.read_framed(path)]
    assert written == len(decoded) == len(sim.delivery_units)
    assert decoded[0] == (codec.VITAL_READING, decoded[0][1])


def test_truncated_payload_file_raises(tmp_path):
    path = tmp_path / "payloads"
    path.write_bytes(b"\x00\x00\x00\x10abc")
    with pytest.raises(ValueError, match="truncated"):
        list(simulator.read_framed(path))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(rate_hz=1000.0), "interval"),
        (dict(tachycardia_probability=0.9, bradycardia_probability=0.9), "sum"),
        (dict(episode_min_s=50.0, episode_max_s=10.0), "episode_min_s"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_invalid_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_too_many_out_of_order_raises():
    with pytest.raises(ValueError, match="out_of_order_fraction"):
        simulator.simulate(_config(out_of_order_fraction=0.6))
