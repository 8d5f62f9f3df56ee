"""Tiered, de-duplicated alerts from fast-path and model events.

Events of one patient and kind within the suppression period of the last
alert sent are counted, not sent, unless they escalate the tier. The next
alert sent counts the repeats it replaced. The alert id is derived
from the event, so an event replayed after a restart gets the same id and
a sink can drop the copy.
"""

import hashlib

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

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
        last, repeats = history.get(event["kind"], (None, 0))
        if not should_send(last, event, self._period_ms):
            history[event["kind"]] = (last, repeats + 1)
            sent.write(history)
            self._suppressed.inc()
            return
        history[event["kind"]] = ((event["event_time"], event["tier"]), 0)
        sent.write(history)
        self._by_tier[event["tier"]].inc()
        yield {
            "alert_id": alert_id(event),
            **event,
            "suppressed_repeats": repeats,
        }


class RaiseAlerts(beam.PTransform):
    """Suppress repeats and turn events into Alert records.

    Args:
        suppression_ms: Repeats of the same patient and kind within this
            period are suppressed unless the tier rises. Default 10 min.
    """

    def __init__(self, suppression_ms: int = 10 * 60_000):
        super().__init__()
        self._suppression_ms = suppression_ms

    def expand(self, events):
        return (
            events
            | "KeyEventsByPatient"
            >> beam.Map(
                lambda event: (event["patient_id"], event)
            ).with_output_types(tuple[str, dict])
            | "SuppressRepeats"
            >> beam.ParDo(_SuppressRepeatsDoFn(self._suppression_ms))
        )
