"""Tests of the NAB scorer on small hand-checked series."""

import math

import numpy as np
import pytest

from bench import nab

STANDARD = nab.CostProfile(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
# A 100-row series without probation, one window over rows 40-59.
ROWS = 100
WINDOW = [(40, 59)]


def _detections(*rows):
    detections = np.zeros(ROWS, dtype=bool)
    detections[list(rows)] = True
    return detections


def _score(*rows, windows=WINDOW, probation=0):
    return nab.score_file(_detections(*rows), windows, STANDARD, probation)


def test_sigmoid_at_window_start():
    # 2 / (1 + e^-5) - 1
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.986614298)


def test_sigmoid_at_window_end_is_zero():
    assert nab.scaled_sigmoid(0.0) == 0.0


def test_sigmoid_far_after_window_is_minus_one():
    assert nab.scaled_sigmoid(3.5) == -1.0


def test_detection_at_window_start():
    result = _score(40)
    assert result.raw == pytest.approx(1.0)
    assert result.tp == 1
    assert result.fn == 19
    assert result.detected_windows == 1


def test_detection_at_window_end():
    # Last row of a 20-row window: position -1/20, divided by the reward
    # at the first row.
    expected = (2 / (1 + math.exp(-0.25)) - 1) / nab.scaled_sigmoid(-1.0)
    assert _score(59).raw == pytest.approx(expected)
    assert expected == pytest.approx(0.126040, abs=1e-6)


def test_earlier_detection_scores_more():
    assert _score(45).raw > _score(55).raw


def test_only_first_detection_in_window_counts():
    result = _score(42, 50, 58)
    assert result.raw == pytest.approx(_score(42).raw)
    assert result.tp == 3
    assert result.fp == 0


def test_missed_window_costs_fn_weight():
    result = _score()
    assert result.raw == -1.0
    assert result.missed_windows == 1
    assert result.fn == 20
    assert result.tn == 80


def test_fp_before_any_window_costs_full_weight():
    result = _score(10, 40)
    assert result.raw == pytest.approx(1.0 - 0.11)
    assert result.fp == 1


def test_fp_just_after_window_costs_little():
    # One row past the window's last row: position 1 / (20 - 1).
    result = _score(40, 60)
    penalty = 0.11 * (2 / (1 + math.exp(5 / 19)) - 1)
    assert result.raw == pytest.approx(1.0 + penalty)
    assert -0.02 < penalty < 0


def test_fp_far_after_window_costs_more():
    near = _score(40, 62).raw
    far = _score(40, 95).raw
    assert far < near


def test_fp_two_windows_after_costs_almost_full_weight():
    # Row 99 is (99 - 59) / (20 - 1) = 2.1 widths past the window.
    result = _score(40, 99)
    penalty = 0.11 * (2 / (1 + math.exp(5 * 40 / 19)) - 1)
    assert result.raw == pytest.approx(1.0 + penalty)
    assert penalty == pytest.approx(-0.11, abs=1e-4)


def test_no_windows_and_no_detections():
    result = _score(windows=[])
    assert result.raw == 0.0
    assert result.tn == ROWS
    assert result.missed_windows == 0


def test_no_windows_each_fp_costs_weight():
    result = _score(10, 20, 30, windows=[])
    assert result.raw == pytest.approx(-0.33)
    assert result.fp == 3


def test_probation_rows_ignored():
    result = _score(5, 40, probation=15)
    assert result.raw == pytest.approx(1.0)
    assert result.fp == 0
    assert result.tp + result.tn + result.fp + result.fn == ROWS - 15


def test_probation_is_fifteen_percent_capped():
    assert nab.probation_rows(4032) == 604
    assert nab.probation_rows(7267) == 750


def test_second_window_fp_measured_from_latest_window():
    windows = [(10, 19), (60, 69)]
    # Row 70 is just after the second window, far after the first.
    result = nab.score_file(_detections(10, 60, 70), windows, STANDARD, 0)
    penalty = 0.11 * nab.scaled_sigmoid(1 / 9)
    assert result.raw == pytest.approx(2.0 + penalty)


def test_window_inside_probation_not_scored():
    windows = [(2, 5), (40, 59)]
    result = nab.score_file(_detections(40), windows, STANDARD, 10)
    assert result.raw == pytest.approx(1.0)
    assert result.missed_windows == 0


def test_fp_after_probation_window_measured_from_it():
    windows = [(2, 5), (40, 59)]
    # Row 12 is 7 rows past the window (2, 5), whose width minus one is 3.
    result = nab.score_file(_detections(12, 40), windows, STANDARD, 10)
    penalty = 0.11 * nab.scaled_sigmoid(7 / 3)
    assert result.raw == pytest.approx(1.0 + penalty)
    assert result.fp == 1


def test_fp_after_one_row_window_counts_rows():
    # NAB divides by the width minus one row, zero for a one-row window.
    result = nab.score_file(_detections(40, 45), [(40, 40)], STANDARD, 0)
    penalty = 0.11 * nab.scaled_sigmoid(5.0)
    assert result.raw == pytest.approx(1.0 + penalty)


def test_window_rows_maps_timestamps():
    times = np.arange(
        np.datetime64("2014-01-01T00:00"),
        np.datetime64("2014-01-01T01:00"),
        np.timedelta64(5, "m"),
    )
    rows = nab.window_rows(times, [("2014-01-01 00:10", "2014-01-01 00:20")])
    assert rows == [(2, 4)]


def test_window_without_rows_raises():
    times = np.array(["2014-01-01T00:00"], dtype="M8[s]")
    with pytest.raises(ValueError, match="contains no row"):
        nab.window_rows(times, [("2015-01-01", "2015-01-02")])


def test_normalised_null_and_perfect():
    perfect = nab.perfect_raw_score(3, STANDARD)
    assert perfect == 3.0
    assert nab.normalised_score(-3.0, 3, STANDARD) == 0.0
    assert nab.normalised_score(perfect, 3, STANDARD) == pytest.approx(100.0)


def test_load_profiles_reads_weights(tmp_path):
    path = tmp_path / "profiles.json"
    path.write_text(
        '{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0,'
        ' "fpWeight": 0.11, "tnWeight": 1.0}}}'
    )
    profile = nab.load_profiles(path)["standard"]
    assert profile.fp_weight == 0.11
    assert profile.fn_weight == 1.0
