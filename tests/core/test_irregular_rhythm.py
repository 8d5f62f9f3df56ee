"""The fast path's irregular-rhythm condition on RMSSD relative to RR.

Readings are one per second. An AF-like reading has RMSSD 150 ms at
100 bpm (RR 600 ms, ratio 0.25), a sinus one 30 ms at 70 bpm (ratio
0.035). The condition must hold for 30 s before it raises one MINOR
`irregular_rhythm` event per run.
"""

import numpy as np
import pytest

from transforms import fast_checks
from transforms.features import no_baseline
from transforms.readings import ReadingBlock

_SUSTAIN_MS = 30_000


def _block(rmssd_ms, heart_rate_bpm, start_s=0, quality=None):
    rmssd_ms = np.asarray(rmssd_ms, dtype=float)
    heart_rate_bpm = np.asarray(heart_rate_bpm, dtype=float)
    n = len(rmssd_ms)
    if quality is None:
        quality = np.full(n, 0.95)
    values = {
        "heart_rate_bpm": heart_rate_bpm,
        "spo2_pct": np.full(n, 97.0),
        "rr_interval_ms": 60_000.0 / heart_rate_bpm,
        "signal_quality": np.asarray(quality, dtype=float),
        "pulse_rate_bpm": heart_rate_bpm,
        "rr_rmssd_ms": rmssd_ms,
    }
    return ReadingBlock(
        "patient-a",
        "device-a",
        np.arange(start_s, start_s + n, dtype=np.int64),
        (np.arange(start_s, start_s + n, dtype=np.int64)) * 1000,
        values,
    )


def _af(seconds):
    return np.full(seconds, 150.0), np.full(seconds, 100.0)


def _irregular_events(*blocks):
    runs, events = {}, []
    for block in blocks:
        events += fast_checks.check(block, no_baseline(), runs, True)
    return [e for e in events if e["kind"] == "irregular_rhythm"]


def test_condition_is_in_table():
    matching = [
        c for c in fast_checks.CONDITIONS if c.kind == "irregular_rhythm"
    ]
    assert len(matching) == 1
    assert matching[0].sustain_ms == _SUSTAIN_MS
    assert matching[0].tier == "MINOR"


def test_irregular_fires_after_sustain():
    events = _irregular_events(_block(*_af(60)))
    assert len(events) == 1
    assert events[0]["event_time"] == _SUSTAIN_MS
    assert events[0]["window_start"] == 0
    assert events[0]["tier"] == "MINOR"
    assert events[0]["reasons"][0]["feature"] == "rr_rmssd_ms"
    assert events[0]["reasons"][0]["value"] == 150.0


def test_irregular_waits_for_sustain():
    assert _irregular_events(_block(*_af(30))) == []


def test_irregular_fires_once_per_run():
    # Ten minutes of AF in 60-reading blocks, as the stateful stage gets
    # them.
    rmssd, rate = _af(600)
    blocks = [
        _block(rmssd[i : i + 60], rate[i : i + 60], start_s=i)
        for i in range(0, 600, 60)
    ]
    events = _irregular_events(*blocks)
    assert [e["event_time"] for e in events] == [_SUSTAIN_MS]


def test_run_continues_across_blocks():
    rmssd, rate = _af(45)
    events = _irregular_events(
        _block(rmssd[:20], rate[:20]),
        _block(rmssd[20:], rate[20:], start_s=20),
    )
    assert [e["event_time"] for e in events] == [_SUSTAIN_MS]
    assert events[0]["window_start"] == 0


@pytest.mark.parametrize(
    ("rmssd_ms", "heart_rate_bpm"),
    [
        (30.0, 70.0),  # resting sinus rhythm, ratio 0.035
        (60.0, 55.0),  # marked sinus arrhythmia, ratio 0.055
        (120.0, 45.0),  # slow rate, ratio 0.09
    ],
)
def test_regular_rhythm_does_not_fire(rmssd_ms, heart_rate_bpm):
    block = _block(np.full(300, rmssd_ms), np.full(300, heart_rate_bpm))
    assert _irregular_events(block) == []


def test_ratio_uses_heart_rate():
    # The same RMSSD of 110 ms is irregular at 120 bpm (RR 500 ms, ratio
    # 0.22) and regular at 50 bpm (RR 1200 ms, ratio 0.09).
    fast = _block(np.full(60, 110.0), np.full(60, 120.0))
    slow = _block(np.full(60, 110.0), np.full(60, 50.0))
    assert len(_irregular_events(fast)) == 1
    assert _irregular_events(slow) == []


def test_isolated_ectopics_do_not_fire():
    # An ectopic beat lifts the 10 s RMSSD for about 10 s. Two of them,
    # 20 s apart, leave sinus readings between them.
    rmssd = np.full(120, 30.0)
    rmssd[10:21] = 150.0
    rmssd[40:51] = 150.0
    assert _irregular_events(_block(rmssd, np.full(120, 80.0))) == []


def test_regular_reading_breaks_run():
    rmssd, rate = _af(80)
    rmssd[15] = 30.0
    events = _irregular_events(_block(rmssd, rate))
    assert [e["window_start"] for e in events] == [16_000]
    assert [e["event_time"] for e in events] == [16_000 + _SUSTAIN_MS]


@pytest.mark.parametrize(
    "channel", ["signal_quality", "rr_rmssd_ms", "heart_rate_bpm"]
)
def test_unjudged_readings_neither_extend_nor_break(channel):
    rmssd, rate = _af(60)
    quality = np.full(60, 0.95)
    columns = {
        "signal_quality": quality,
        "rr_rmssd_ms": rmssd,
        "heart_rate_bpm": rate,
    }
    # Poor quality or a missing value for readings 10-19 and 29-31.
    unjudged = 0.1 if channel == "signal_quality" else np.nan
    columns[channel][10:20] = unjudged
    columns[channel][29:32] = unjudged
    events = _irregular_events(_block(rmssd, rate, quality=quality))
    # Not broken: the run still starts at 0 s. Not extended: readings at
    # 30 s and 31 s are unjudged, so the first judged one after them fires.
    assert [e["window_start"] for e in events] == [0]
    assert [e["event_time"] for e in events] == [32_000]


def test_unjudged_readings_alone_do_not_fire():
    rmssd, rate = _af(60)
    quality = np.full(60, 0.1)
    assert _irregular_events(_block(rmssd, rate, quality=quality)) == []
