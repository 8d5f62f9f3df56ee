"""The pipeline's steps in plain Python and NumPy, without Beam.

This is the floor the Beam pipeline is compared with: the same project
code on the same payloads, with the runner's costs (coders, state cache,
shuffles, bundles) taken away. The parsing and patient-state DoFns are
called directly with dict-backed state and no-op timers, windows are
merged with `transforms.features`, rows are scored in batches with the
`ModelBundle` and explained with `transforms.scoring.explain`, and
repeats are suppressed with `transforms.alerts.should_send`.

Bounded semantics: no event-time timers, as in a bounded pipeline run.
"""

import time
from collections import defaultdict

import numpy as np
from apache_beam.pvalue import TaggedOutput

from transforms import alerts, features, scoring
from transforms.parse import _ParseVitalsDoFn
from transforms.patient_state import (
    EVENTS_TAG,
    TrackingConfig,
    _TrackPatientDoFn,
)

_SUPPRESSION_MS = 600_000


class DictState:
    """A ReadModifyWriteState stand-in that keeps the value in memory."""

    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class NoTimer:
    """A timer stand-in: bounded runs arm no timers."""

    def set(self, timestamp):
        pass

    def clear(self):
        pass


class PatientTracker:
    """The patient-state DoFn called directly, one DictState per patient."""

    def __init__(self, config: TrackingConfig):
        self._dofn = _TrackPatientDoFn(config)
        self.states: dict[str, DictState] = {}

    def process(self, block):
        """Yield the DoFn's outputs for one valid block."""
        state = self.states.setdefault(block.patient_id, DictState())
        yield from self._dofn.process(
            (block.patient_id, block),
            state=state,
            silence=NoTimer(),
            expiry=NoTimer(),
        )


def _window_starts(t_ms: int, size_ms: int, period_ms: int) -> range:
    last_start = (t_ms // period_ms) * period_ms
    return range(last_start - size_ms + period_ms, last_start + 1, period_ms)


def _parse_and_track(payloads, config):
    parse = _ParseVitalsDoFn(None, 300_000, time.time)
    parse.setup()
    tracker = PatientTracker(config)
    windows = defaultdict(list)
    events = []
    for payload in payloads:
        for block in parse.process(("bench", payload)):
            if isinstance(block, TaggedOutput):
                continue
            for output in tracker.process(block):
                if isinstance(output, TaggedOutput):
                    if output.tag == EVENTS_TAG:
                        events.append(output.value.value)
                    continue
                patient_id, part = output.value
                starts = _window_starts(
                    part.t_ref_ms,
                    config.window_size_ms,
                    config.window_period_ms,
                )
                for start in starts:
                    windows[(patient_id, start)].append(part)
    return windows, events


def _feature_rows(windows, config) -> list[dict]:
    rows = []
    for (patient_id, start), parts in windows.items():
        merged = features.merge(parts)
        if merged.t_last_ms - merged.t_ref_ms < config.window_size_ms // 2:
            continue
        rows.append(
            {
                "patient_id": patient_id,
                "window_start": start,
                "event_time": merged.t_last_ms,
                "features": features.features_of(merged),
            }
        )
    return rows


def _score(rows, bundle, max_batch: int) -> list[dict]:
    events = []
    for first in range(0, len(rows), max_batch):
        batch = rows[first : first + max_batch]
        matrix = np.vstack([row["features"] for row in batch])
        scores = bundle.anomaly_scores(matrix)
        for i in np.flatnonzero(scores >= bundle.threshold):
            event = scoring.explain(bundle, matrix[i], scores[i], batch[i])
            if event is not None:
                events.append(event)
    return events


def _raise_alerts(events) -> list[dict]:
    history = defaultdict(dict)
    sent = []
    for event in sorted(events, key=lambda e: e["event_time"]):
        kinds = history[event["patient_id"]]
        last = kinds.get(event["kind"])
        if alerts.should_send(last, event, _SUPPRESSION_MS):
            kinds[event["kind"]] = (event["event_time"], event["tier"])
            sent.append({"alert_id": alerts.alert_id(event), **event})
    return sent


def run(payloads, bundle, max_score_batch: int = 4096) -> list[dict]:
    """Run every step over `payloads` and return the alerts."""
    config = TrackingConfig(event_timers=False)
    windows, events = _parse_and_track(payloads, config)
    rows = _feature_rows(windows, config)
    events += _score(rows, bundle, max_score_batch)
    return _raise_alerts(events)
