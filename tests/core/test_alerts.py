"""Repeat suppression and tiers of `RaiseAlerts`.

Bounded runs must send the same alerts whatever order the runner delivers
events in; streaming runs decide on each event as it arrives.
"""

import itertools

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.core.helpers import T0_MS, batch_pipeline
from transforms.alerts import RaiseAlerts, should_send

_PERIOD_MS = 600_000


def _event(second: int, tier="MINOR", kind="tachycardia", patient="p1"):
    time_ms = T0_MS + second * 1000
    return {
        "patient_id": patient,
        "kind": kind,
        "tier": tier,
        "event_time": time_ms,
        "window_start": time_ms,
        "anomaly_score": None,
        "model_version": "",
        "reasons": [],
    }


def _assert_sent(events, expected, bounded, reshuffle=False):
    """Check (patient, kind, tier, second, suppressed_repeats) of alerts."""
    with batch_pipeline() as pipeline:
        alerts = (
            pipeline
            | beam.Create(events, reshuffle=reshuffle)
            | RaiseAlerts(_PERIOD_MS, bounded=bounded)
            | beam.Map(
                lambda alert: (
                    alert["patient_id"],
                    alert["kind"],
                    alert["tier"],
                    (alert["event_time"] - T0_MS) // 1000,
                    alert["suppressed_repeats"],
                )
            )
        )
        assert_that(alerts, equal_to(expected))


def test_first_event_is_sent():
    assert should_send(None, _event(0), _PERIOD_MS)


def test_repeat_within_period_is_suppressed():
    last = (T0_MS, "MINOR")
    assert not should_send(last, _event(599), _PERIOD_MS)
    assert should_send(last, _event(600), _PERIOD_MS)


def test_higher_tier_is_sent_within_period():
    last = (T0_MS, "MINOR")
    assert should_send(last, _event(1, tier="SEVERE"), _PERIOD_MS)
    assert not should_send((T0_MS, "SEVERE"), _event(1), _PERIOD_MS)


@pytest.mark.parametrize(
    "seconds", list(itertools.permutations([100, 200, 900]))
)
def test_bounded_run_decides_in_event_time_order(seconds):
    # In event-time order 100 s is sent, 200 s falls in its period and
    # 900 s comes 800 s later, so it is sent with one repeat counted.
    events = [_event(second) for second in seconds]
    expected = [
        ("p1", "tachycardia", "MINOR", 100, 0),
        ("p1", "tachycardia", "MINOR", 900, 1),
    ]
    _assert_sent(events, expected, bounded=True)


def test_streaming_run_decides_on_arrival():
    # 900 s arrives first and is sent; 200 s is 700 s from it, so it is
    # sent too, and 100 s falls within the period of 200 s.
    events = [_event(900), _event(200), _event(100)]
    expected = [
        ("p1", "tachycardia", "MINOR", 200, 0),
        ("p1", "tachycardia", "MINOR", 900, 0),
    ]
    _assert_sent(events, expected, bounded=False)


def test_bounded_simultaneous_higher_tier_sent():
    events = [_event(10), _event(10, tier="SEVERE"), _event(20)]
    expected = [("p1", "tachycardia", "SEVERE", 10, 0)]
    for order in itertools.permutations(events):
        _assert_sent(list(order), expected, bounded=True)


def test_bounded_patients_and_kinds_separate():
    events = [
        _event(second, kind=kind, patient=patient)
        for second in (0, 30, 700)
        for kind in ("tachycardia", "desaturation")
        for patient in ("p1", "p2")
    ]
    expected = [
        (patient, kind, "MINOR", second, repeats)
        for patient in ("p1", "p2")
        for kind in ("tachycardia", "desaturation")
        for second, repeats in ((0, 0), (700, 1))
    ]
    _assert_sent(events, expected, bounded=True, reshuffle=True)
    _assert_sent(events[::-1], expected, bounded=True, reshuffle=True)


def test_bounded_alerts_keep_their_event_time():
    events = [_event(900), _event(100)]
    with batch_pipeline() as pipeline:
        stamps = (
            pipeline
            | beam.Create(events, reshuffle=False)
            | RaiseAlerts(_PERIOD_MS, bounded=True)
            | beam.Map(
                lambda alert, ts=beam.DoFn.TimestampParam: (
                    alert["event_time"],
                    ts.micros // 1000,
                )
            )
        )
        assert_that(
            stamps,
            equal_to(
                [
                    (T0_MS + 100_000, T0_MS + 100_000),
                    (T0_MS + 900_000, T0_MS + 900_000),
                ]
            ),
        )


@pytest.mark.parametrize("bounded", [True, False])
def test_alerts_are_typed_as_dicts(bounded):
    # Sinks declare dict inputs; an Optional output type fails the
    # pipeline's type check when the graph is built.
    pipeline = batch_pipeline()
    alerts = (
        pipeline
        | beam.Create([_event(0)])
        | RaiseAlerts(_PERIOD_MS, bounded=bounded)
    )
    alerts | beam.Map(len).with_input_types(dict)
