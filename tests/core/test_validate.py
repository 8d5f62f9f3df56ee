"""Tests of physiological and temporal validation."""

import math

import numpy as np

from tests.core.helpers import T0_MS
from transforms import validate
from transforms.readings import block_from_reading

NOW_MS = T0_MS + 3_600_000


def _reading(**changes):
    record = {
        "patient_id": "p",
        "device_id": "d",
        "sequence": 1,
        "event_time": T0_MS,
        "heart_rate_bpm": 72.0,
        "spo2_pct": 97.0,
        "rr_interval_ms": 833.0,
        "signal_quality": 0.9,
    }
    record.update(changes)
    return record


def _check(record):
    block = block_from_reading(record)
    masks = validate.nan_mask_of_record(False, record)
    return validate.invalid_reasons(block, masks, now_ms=NOW_MS)


def test_valid_reading_passes():
    valid, reasons = _check(_reading())
    assert valid.tolist() == [True]
    assert reasons == []


def test_spo2_250_names_value():
    valid, reasons = _check(_reading(spo2_pct=250.0))
    assert valid.tolist() == [False]
    assert reasons[0][0] == "out_of_range"
    assert "spo2_pct=250" in reasons[0][1]


def test_heart_rate_below_20_rejected():
    _, reasons = _check(_reading(heart_rate_bpm=12.0))
    assert reasons[0][0] == "out_of_range"
    assert "heart_rate_bpm=12" in reasons[0][1]


def test_nan_rejected_not_treated_as_absent():
    _, reasons = _check(_reading(heart_rate_bpm=math.nan))
    assert reasons[0] == ("not_a_number", "heart_rate_bpm is NaN")


def test_absent_channel_is_valid():
    valid, _ = _check(_reading(spo2_pct=None))
    assert valid.tolist() == [True]


def test_day_in_future_rejected():
    _, reasons = _check(_reading(event_time=NOW_MS + 86_400_000))
    assert reasons[0][0] == "future_timestamp"
    assert "86400 s ahead" in reasons[0][1]


def test_unset_clock_rejected():
    _, reasons = _check(_reading(event_time=0))
    assert reasons[0][0] == "implausible_timestamp"


def test_every_problem_listed():
    _, reasons = _check(_reading(spo2_pct=101.0, signal_quality=2.0))
    assert "spo2_pct=101" in reasons[0][1]
    assert "signal_quality=2" in reasons[0][1]


def test_batch_nan_mask_marks_positions():
    masks = validate.nan_mask_of_record(
        True, {"heart_rate_bpm": [70.0, math.nan, 71.0], "spo2_pct": []}
    )
    assert list(masks) == ["heart_rate_bpm"]
    assert np.array_equal(masks["heart_rate_bpm"], [False, True, False])
