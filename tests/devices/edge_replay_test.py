"""Tests for the edge replay of real WFDB recordings."""

import math

import numpy as np
import pytest

from devices import edge_replay, labels, simulator
from schemas import codec

_RANGES = {
    "heart_rate_bpm": (20.0, 300.0),
    "rr_interval_ms": (200.0, 3000.0),
    "pulse_rate_bpm": (20.0, 300.0),
    "rr_rmssd_ms": (0.0, 1000.0),
}


@pytest.fixture(scope="module")
def replays(data_dir):
    selected = {"100", "208", "a185l", "a439l", "data_8_4"}
    return {
        r.name: edge_replay.replay_record(r)
        for r in labels.list_recordings(data_dir)
        if r.name in selected
    }


def test_record_100_median_heart_rate(replays):
    heart_rate = replays["100"].columns["heart_rate_bpm"]
    assert 70.0 <= np.nanmedian(heart_rate) <= 80.0
    assert np.isnan(heart_rate).mean() < 0.01


def _trigeminy_seconds(data_dir, n_seconds):
    seconds = np.arange(n_seconds)
    inside = np.zeros(n_seconds, dtype=bool)
    for episode in labels.load_episodes(data_dir):
        if episode.record == "208":
            inside |= (seconds >= episode.start_s) & (seconds < episode.end_s)
    return inside


def test_record_208_trigeminy_rmssd_above_sinus(replays, data_dir):
    # Record 208 outside its "(T" episodes is not a clean baseline: its
    # "(N" stretches carry PVCs and couplets, and only 6 s of them have a
    # 10 s window free of ectopic beats in the .atr beat labels. Record
    # 100, sinus rhythm throughout, is the baseline instead.
    rmssd = replays["208"].columns["rr_rmssd_ms"]
    inside = _trigeminy_seconds(data_dir, len(rmssd))
    sinus = replays["100"].columns["rr_rmssd_ms"]
    assert inside.sum() > 200
    assert np.nanmedian(rmssd[inside]) > 2.0 * np.nanmedian(sinus)


def test_record_208_trigeminy_rmssd_high(replays, data_dir):
    rmssd = replays["208"].columns["rr_rmssd_ms"]
    inside = _trigeminy_seconds(data_dir, len(rmssd))
    assert np.nanmedian(rmssd[inside]) > 100.0


def test_true_asystole_shows_null_heart_rate(replays):
    heart_rate = replays["a185l"].columns["heart_rate_bpm"]
    assert np.isnan(heart_rate[290:300]).any()
    assert replays["a185l"].null_counts["heart_rate_bpm.too_few_beats"] > 0


def test_false_asystole_keeps_heart_rate(replays):
    heart_rate = replays["a439l"].columns["heart_rate_bpm"]
    assert not np.isnan(heart_rate[290:300]).any()


def test_ids_and_times(replays):
    result = replays["208"]
    assert result.patient_id == "rec-mitdb-208"
    assert result.device_id == "edge-mitdb-208"
    assert result.ecg_lead == "MLII"
    first, second = list(result.readings())[:2]
    assert first["event_time"] == edge_replay.DEFAULT_START_EPOCH_MS
    assert second["event_time"] - first["event_time"] == 1000
    assert second["sequence"] == 1


def test_no_ppg_and_no_spo2_are_null(replays):
    cpsc = replays["data_8_4"]
    assert not cpsc.has_ppg
    assert np.isnan(cpsc.columns["pulse_rate_bpm"]).all()
    assert np.isnan(cpsc.columns["spo2_pct"]).all()
    cinc = replays["a185l"]
    assert cinc.has_ppg
    assert np.isfinite(cinc.columns["pulse_rate_bpm"]).mean() > 0.5


def test_values_inside_valid_ranges(replays):
    for result in replays.values():
        for name, (low, high) in _RANGES.items():
            values = result.columns[name]
            values = values[~np.isnan(values)]
            assert (values >= low).all(), (result.device_id, name)
            assert (values <= high).all(), (result.device_id, name)
        quality = result.columns["signal_quality"]
        assert ((quality >= 0.0) & (quality <= 1.0)).all()


def test_out_of_range_values_counted(replays):
    # Missed beats in record 208 give RMSSD above 1000 ms in a few seconds.
    assert replays["208"].null_counts["rr_rmssd_ms.out_of_range"] > 0


def test_readings_round_trip_through_avro(replays, tmp_path):
    result = replays["a185l"]
    paths = edge_replay.write_replay(result, tmp_path, batch_seconds=None)
    records = list(codec.read_container(paths["readings"]))
    assert len(records) == len(result)
    for record, expected in zip(records, result.readings(), strict=True):
        assert record.keys() == expected.keys()
        for name, value in expected.items():
            if name == "event_time":
                millis = round(record[name].timestamp() * 1000)
                assert millis == value
            elif isinstance(value, float):
                assert record[name] == pytest.approx(value)
            else:
                assert record[name] == value


@pytest.mark.parametrize("record", ["100", "a185l"])
def test_batches_round_trip_through_avro(replays, tmp_path, record):
    # At 53 bpm (a185l) many seconds end no beat, so rr_interval_ms
    # switches between null and present and batches are short.
    result = replays[record]
    paths = edge_replay.write_replay(result, tmp_path, batch_seconds=60)
    batches = list(codec.read_container(paths["batches"]))
    assert sum(len(b["signal_quality"]) for b in batches) == len(result)
    assert max(len(b["signal_quality"]) for b in batches) <= 60
    if record == "100":
        assert len(batches) < 2 * len(result) / 60
    expected_sequence = 0
    for batch in batches:
        size = len(batch["signal_quality"])
        assert batch["first_sequence"] == expected_sequence
        assert batch["spo2_pct"] == []
        for name in _RANGES:
            assert len(batch[name]) in (0, size)
            assert not any(math.isnan(v) for v in batch[name])
        expected_sequence += size


def test_payload_file_decodes(replays, tmp_path):
    result = replays["data_8_4"]
    paths = edge_replay.write_replay(
        result, tmp_path, batch_seconds=None, payload_file=True
    )
    decoded = [
        codec.decode_payload(p)
        for p in simulator.read_framed(paths["payloads"])
    ]
    assert len(decoded) == len(result)
    assert {kind for kind, _ in decoded} == {codec.VITAL_READING}
    assert [r["sequence"] for _, r in decoded] == list(range(len(result)))


def test_record_without_ecg_lead_raises(tmp_path):
    with pytest.raises(ValueError, match="no ECG lead"):
        edge_replay._pick_lead(["V1", "PLETH"], "x")


def test_recording_from_path_dataset_tag():
    recording = edge_replay.recording_from_path(
        "/data/cinc2015_false_alarms/a185l"
    )
    assert recording.dataset == "cinc2015"
    assert recording.name == "a185l"
