"""Tests for ground-truth episode loading."""

import pytest

from devices import labels


@pytest.fixture(scope="module")
def episodes(data_dir):
    return labels.load_episodes(data_dir)


def _of(episodes, record):
    return [e for e in episodes if e.record == record]


def test_mitdb_208_trigeminy_episodes(episodes):
    trigeminy = _of(episodes, "208")
    assert len(trigeminy) == 26
    assert {e.kind for e in trigeminy} == {"ventricular_trigeminy"}
    assert trigeminy[0].start_s == pytest.approx(62.264)
    assert trigeminy[0].end_s == pytest.approx(75.714)
    assert {e.label_source for e in trigeminy} == {"mitdb_atr"}


def test_normal_rhythm_left_out_by_default(episodes, data_dir):
    assert _of(episodes, "100") == []
    with_normal = labels.load_episodes(data_dir, include_normal=True)
    assert [e.kind for e in _of(with_normal, "100")] == ["normal_sinus_rhythm"]


def test_cpsc_af_episodes_without_zero_length(episodes):
    af_101_6 = _of(episodes, "data_101_6")
    assert len(af_101_6) == 4
    assert {e.kind for e in af_101_6} == {"atrial_fibrillation"}
    persistent = _of(episodes, "data_8_2")
    assert len(persistent) == 1
    assert persistent[0].start_s == 0.0
    assert persistent[0].end_s == pytest.approx(215.455)
    assert all(e.end_s > e.start_s for e in episodes)


def test_cinc_alarms_as_windows(episodes):
    alarms = [e for e in episodes if e.label_source == "cinc2015_alarm"]
    assert len(alarms) == 10
    assert sum(e.present for e in alarms) == 5
    (a185l,) = _of(episodes, "a185l")
    assert a185l.kind == "asystole"
    assert a185l.present
    assert (a185l.start_s, a185l.end_s) == (290.0, 300.0)
    (a439l,) = _of(episodes, "a439l")
    assert not a439l.present


def test_event_time_ms_offsets_start():
    episode = labels.Episode("208", "ventricular_trigeminy", 1.5, 3.0, "x")
    assert episode.event_time_ms(1_000_000) == (1_001_500, 1_003_000)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(labels.DATA_DIR_ENV, str(tmp_path))
    assert labels.resolve_data_dir() == tmp_path
    monkeypatch.setenv(labels.DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="VITALWATCH_DATA"):
        labels.resolve_data_dir()


def test_list_recordings_counts(data_dir):
    recordings = labels.list_recordings(data_dir)
    by_dataset = {}
    for recording in recordings:
        by_dataset[recording.dataset] = by_dataset.get(recording.dataset, 0) + 1
    assert by_dataset == {"mitdb": 2, "cinc2015": 10, "cpsc2021": 9}


def test_list_recordings_rejects_unknown_dataset(data_dir):
    with pytest.raises(ValueError, match="unknown data set"):
        labels.list_recordings(data_dir, ("nope",))
