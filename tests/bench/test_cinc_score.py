"""Tests of the CinC 2015 challenge score and alarm confirmation."""

import math

import pytest

from bench.quality import datasets, metrics


def test_score_counts_fn_five_times():
    # (2 + 3) / (2 + 3 + 1 + 5 * 1) = 5 / 11
    assert metrics.challenge_score(2, 3, 1, 1) == pytest.approx(5 / 11)


def test_score_all_alarms_kept_is_half():
    # Keeping 5 true and 5 false alarms: 5 / (5 + 5).
    assert metrics.challenge_score(5, 0, 5, 0) == 0.5


def test_score_perfect_is_one():
    assert metrics.challenge_score(5, 5, 0, 0) == 1.0


def test_score_all_suppressed():
    # Suppressing everything: 5 / (5 + 25).
    assert metrics.challenge_score(0, 5, 0, 5) == pytest.approx(1 / 6)


def test_score_without_alarms_is_nan():
    assert math.isnan(metrics.challenge_score(0, 0, 0, 0))


def test_summary_counts_and_rates():
    decisions = [
        ("asystole", True, True),
        ("asystole", False, True),
        ("extreme_tachycardia", True, False),
        ("extreme_tachycardia", False, False),
    ]
    summary = metrics.cinc_summary(decisions)
    assert (summary["TP"], summary["FP"], summary["FN"], summary["TN"]) == (
        1,
        1,
        1,
        1,
    )
    assert summary["score"] == pytest.approx(2 / 8)
    assert summary["by_type"]["asystole"] == {"TPR": 1.0, "TNR": 0.0}
    assert summary["by_type"]["extreme_tachycardia"] == {
        "TPR": 0.0,
        "TNR": 1.0,
    }


def _episode(kind, present, record="r1"):
    return datasets.labels.Episode(
        record, kind, 290.0, 300.0, "cinc2015_alarm", present
    )


def _alarm(second, kind, tier="SEVERE"):
    return metrics.Alarm(
        datasets.edge_replay.DEFAULT_START_EPOCH_MS + second * 1000, kind, tier
    )


@pytest.mark.parametrize(
    ("second", "kind", "confirmed"),
    [
        (295, "asystole", True),
        (240, "bradycardia", True),
        (300, "asystole", True),
        (239, "asystole", False),
        (301, "asystole", False),
        (295, "tachycardia", False),
        (295, "anomaly", False),
    ],
)
def test_confirmation_span_and_kind(second, kind, confirmed):
    alarms = {"rec-cinc2015-r1": [_alarm(second, kind)]}
    decisions = datasets.cinc_pipeline_decisions(
        [_episode("asystole", True)], alarms, "cinc2015"
    )
    assert decisions == [("asystole", True, confirmed)]


def test_confirmation_any_kind():
    alarms = {"rec-cinc2015-r1": [_alarm(295, "anomaly")]}
    decisions = datasets.cinc_pipeline_decisions(
        [_episode("asystole", False)], alarms, "cinc2015", any_kind=True
    )
    assert decisions == [("asystole", False, True)]


def test_static_alarm_once_per_crossing():
    times = [0, 1000, 2000, 3000, 4000, 5000]
    heart_rate = [100, 130, 131, 100, 125, 30]
    alarms = metrics.static_alarms(times, heart_rate, [float("nan")] * 6)
    assert [(a.time_ms, a.kind) for a in alarms] == [
        (1000, "heart_rate_high"),
        (4000, "heart_rate_high"),
        (5000, "heart_rate_low"),
    ]


def test_static_ignores_invalid_values():
    alarms = metrics.static_alarms([0, 1000], [0.0, 70.0], [250.0, 97.0])
    assert alarms == []


def test_episode_metrics_match_and_false_alarms():
    span = metrics.Span("p", "tachycardia", 10_000, 20_000)
    alarms = {
        "p": [
            metrics.Alarm(15_000, "tachycardia", "SEVERE"),
            metrics.Alarm(500_000, "tachycardia", "SEVERE"),
        ],
        "q": [],
    }
    result = metrics.episode_metrics([span], alarms, hours=2.0)
    assert result["detected"] == 1
    assert result["median_delay_s"] == 5.0
    assert result["false_alarms"] == 1
    assert result["false_per_hour"] == 0.5
    assert result["ppv"] == 0.5


class _FakeReplay:
    """Per-second readings with a given heart-rate series, clean signal."""

    def __init__(self, heart_rates):
        self._heart_rates = heart_rates

    def readings(self):
        for second, rate in enumerate(self._heart_rates):
            yield {
                "patient_id": "p",
                "device_id": "d",
                "sequence": second,
                "event_time": 1_000_000 + second * 1000,
                "heart_rate_bpm": rate,
                "spo2_pct": None,
                "rr_interval_ms": None,
                "pulse_rate_bpm": None,
                "rr_rmssd_ms": None,
                "signal_quality": 1.0,
            }


def test_sounding_run_open_in_span():
    replay = _FakeReplay([30.0] * 20)
    sounding = datasets.fast_path_sounding({"rec-x": replay}, (10, 15), "rec-")
    assert sounding == {"rec-x": {"bradycardia"}}


def test_sounding_run_ended_before_span():
    replay = _FakeReplay([30.0] * 8 + [70.0] * 12)
    sounding = datasets.fast_path_sounding({"rec-x": replay}, (10, 15), "rec-")
    assert sounding == {"rec-x": set()}


def test_sounding_run_not_yet_fired():
    # Below 40 bpm for only 3 s, short of the 5 s sustain time.
    replay = _FakeReplay([70.0] * 10 + [30.0] * 4 + [70.0] * 6)
    sounding = datasets.fast_path_sounding({"rec-x": replay}, (10, 15), "rec-")
    assert sounding == {"rec-x": set()}


def test_sounding_confirms_compatible_alarm():
    alarms = {"rec-cinc2015-r1": []}
    sounding = {"rec-cinc2015-r1": {"bradycardia"}}
    decisions = datasets.cinc_pipeline_decisions(
        [_episode("asystole", True)], alarms, "cinc2015", sounding=sounding
    )
    assert decisions == [("asystole", True, True)]


def test_sounding_ignores_incompatible_kind():
    sounding = {"rec-cinc2015-r1": {"tachycardia"}}
    decisions = datasets.cinc_pipeline_decisions(
        [_episode("asystole", True)], {}, "cinc2015", sounding=sounding
    )
    assert decisions == [("asystole", True, False)]
