"""Tiered, de-duplicated alerts from fast-path and model events.

Events of one patient and kind within the suppression period of the last
alert sent are counted, not sent, unless they escalate the tier. The next
alert sent counts the repeats it replaced. The alert id is derived
from the event, so an event replayed after a restart gets the same id and
a sink can drop the copy.

Streaming runs decide on each event as it arrives, so an alert is never
held back for the watermark. Bounded runs decide at the end of the input
in event-time order, so that the alerts do not depend on the order in
which a runner delivers events.
"""

import hashlib

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms import state_cache_sizing

_NAMESPACE = "vitalwatch"
TIER_RANK = {"INFO": 0, "MINOR": 1, "SEVERE": 2}


def alert_id(event: dict) -> str:
    """Derive a stable id from the patient, kind, tier and span start."""
    key = "|".join(
        str(event[field])
        for field in ("patient_id", "kind", "tier", "window_start")
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def should_send(last: tuple | None, event: dict, period_ms: int) -> bool:
    """Decide whether an event becomes an alert.

    Args:
        last: (event time ms, tier) of the last alert of this kind, or None.
        event: The candidate event.
        period_ms: Suppression period.
    """
    if last is None:
        return True
    last_time, last_tier = last
    if TIER_RANK[event["tier"]] > TIER_RANK[last_tier]:
        return True
    return abs(event["event_time"] - last_time) >= period_ms


class _SuppressRepeatsDoFn(beam.DoFn):
    """Repeat suppression that decides on each event as it arrives."""

    SENT = ReadModifyWriteStateSpec("sent", PickleCoder())

    def __init__(self, period_ms: int):
        self._period_ms = period_ms
        self._suppressed = Metrics.counter(_NAMESPACE, "alerts_suppressed")
        self._by_tier = {
            tier: Metrics.counter(_NAMESPACE, f"alerts_{tier.lower()}")
            for tier in TIER_RANK
        }

    def setup(self):
        state_cache_sizing.install()

    def process(self, element, sent=beam.DoFn.StateParam(SENT)):
        _, event = element
        history = sent.read() or {}
        alert = self._decide(history, event)
        sent.write(history)
        if alert is not None:
            yield alert

    def _decide(self, history: dict, event: dict) -> dict | None:
        """Update `history` with `event`; return its alert, if it is sent."""
        last, repeats = history.get(event["kind"], (None, 0))
        if not should_send(last, event, self._period_ms):
            history[event["kind"]] = (last, repeats + 1)
            self._suppressed.inc()
            return None
        history[event["kind"]] = ((event["event_time"], event["tier"]), 0)
        self._by_tier[event["tier"]].inc()
        return {
            "alert_id": alert_id(event),
            **event,
            "suppressed_repeats": repeats,
        }


def event_time_order(event: dict) -> tuple:
    """Sort key that puts a patient's events in one order on any runner.

    Events are ordered by event time; at equal times the higher tier comes
    first, so that it is the one sent. The remaining fields break ties.
    """
    return (
        event["event_time"],
        -TIER_RANK[event["tier"]],
        event["kind"],
        event["window_start"],
        alert_id(event),
    )


class _SuppressInEventTimeOrderDoFn(_SuppressRepeatsDoFn):
    """Repeat suppression that decides on a patient's events in time order.

    Runners deliver the events of a bounded run in an order of their own,
    and the fast path and the model path reach this step at different
    times. Deciding at the end of the input, in event-time order, sends
    the same alerts on every runner. The timer fires once the input is
    complete, so this suits bounded runs only.
    """

    PENDING = BagStateSpec("pending", PickleCoder())
    RELEASE = TimerSpec("release", TimeDomain.WATERMARK)

    def process(
        self,
        element,
        window=beam.DoFn.WindowParam,
        pending=beam.DoFn.StateParam(PENDING),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        pending.add(element[1])
        release.set(window.max_timestamp())
        return ()  # nothing is sent before the input ends

    @on_timer(RELEASE)
    def on_release(
        self,
        pending=beam.DoFn.StateParam(PENDING),
        sent=beam.DoFn.StateParam(_SuppressRepeatsDoFn.SENT),
    ):
        history = sent.read() or {}
        for event in sorted(pending.read(), key=event_time_order):
            alert = self._decide(history, event)
            if alert is not None:
                yield TimestampedValue(
                    alert, Timestamp(micros=event["event_time"] * 1000)
                )
        pending.clear()
        sent.write(history)


class RaiseAlerts(beam.PTransform):
    """Suppress repeats and turn events into Alert records.

    Args:
        suppression_ms: Repeats of the same patient and kind within this
            period are suppressed unless the tier rises. Default 10 min.
        bounded: Decide at the end of the input, in event-time order, so
            that every runner sends the same alerts. Streaming runs leave
            it False and decide on each event as it arrives, without
            waiting for the watermark.
    """

    def __init__(self, suppression_ms: int = 10 * 60_000, bounded=False):
        super().__init__()
        self._suppression_ms = suppression_ms
        self._bounded = bounded

    def expand(self, events):
        if self._bounded:
            suppress = _SuppressInEventTimeOrderDoFn
        else:
            suppress = _SuppressRepeatsDoFn
        return (
            events
            | "KeyEventsByPatient"
            >> beam.Map(
                lambda event: (event["patient_id"], event)
            ).with_output_types(tuple[str, dict])
            | "SuppressRepeats"
            >> beam.ParDo(suppress(self._suppression_ms)).with_output_types(
                dict
            )
        )
