"""Per-patient stateful stage: de-duplication, lateness, baseline, silence.

`TrackPatients` runs in the global window, keyed by patient, ahead of the
sliding windows. For every block it

1. drops readings already seen from the same (device, sequence number);
2. sends late readings to a side output. Beam would drop a reading whose
   windows have all expired without a trace, so this stage learns a lower
   bound of the watermark from an event-time timer and classifies those
   readings first;
3. runs the fast sustained-condition checks on readings newer than any
   checked before, and updates the rolling baseline;
4. splits the on-time readings at window-period boundaries and emits one
   `Summary` per part, stamped with the part's event time.

A second event-time timer raises a "device silent" event when a patient's
readings stop, and clears the patient's state once the silence outlasts
`leave_after_ms`.

Bounded runs take the same steps without keyed state: each patient's
blocks are grouped and replayed in event-time order, so the output does
not depend on the order in which the runner delivered them.
"""

import dataclasses
import math

import apache_beam as beam
import numpy as np
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Timestamp

from transforms import dedup, fast_checks, state_cache_sizing, validate
from transforms.baseline import Baseline
from transforms.features import part_summaries
from transforms.readings import ReadingBlock, is_small, sort_by_time

LATE_TAG = "late"
EVENTS_TAG = "events"
_NAMESPACE = "vitalwatch"


@dataclasses.dataclass
class PatientState:
    """Everything kept per patient between elements."""

    devices: dict = dataclasses.field(default_factory=dict)
    baseline: Baseline = dataclasses.field(default_factory=Baseline)
    runs: dict = dataclasses.field(default_factory=dict)
    last_event_ms: int = -1
    last_checked_ms: int = -1
    frontier_ms: int = -1
    expiry_timer_ms: int = -1
    has_ecg: bool = False
    silence_notified: bool = False


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Timing of the stateful stage, all in milliseconds.

    Attributes:
        window_size_ms: Sliding window size.
        window_period_ms: Sliding window period.
        allowed_lateness_ms: Lateness the windows accept.
        silence_ms: Gap after which a patient's device counts as silent.
        leave_after_ms: Gap after which the patient's state is cleared.
        event_timers: Whether to arm the silence and expiry timers. Off for
            bounded input, which has no late data and whose end is not a
            silent device; gaps are then reported when readings resume.
    """

    window_size_ms: int = 5 * 60_000
    window_period_ms: int = 60_000
    allowed_lateness_ms: int = 2 * 60_000
    silence_ms: int = 60_000
    leave_after_ms: int = 30 * 60_000
    event_timers: bool = True


def _timestamp(ms: int) -> Timestamp:
    return Timestamp(micros=int(ms) * 1000)


def _millis(timestamp) -> int:
    return int(timestamp.micros // 1000)


class _PatientTracking:
    """The steps applied to each block of one patient, shared by both DoFns."""

    def __init__(self, config: TrackingConfig):
        self._config = config
        self._duplicates = Metrics.counter(_NAMESPACE, "readings_duplicate")
        self._late = Metrics.counter(_NAMESPACE, "readings_late")
        self._too_old = Metrics.counter(
            _NAMESPACE, "readings_too_old_to_deduplicate"
        )
        self._on_time = Metrics.counter(_NAMESPACE, "readings_on_time")
        self._silent = Metrics.counter(_NAMESPACE, "devices_silent")
        self._cleared = Metrics.counter(_NAMESPACE, "patients_cleared")

    def _track(self, patient: PatientState, block: ReadingBlock):
        """Apply one block to `patient`; return False if nothing was new."""
        block = yield from self._drop_seen(patient, block)
        if len(block) == 0:
            return False
        block = yield from self._drop_late(patient, block)
        if len(block):
            yield from self._observe(patient, block)
            yield from self._summaries(patient, block)
        return True

    def _drop_seen(self, patient: PatientState, block: ReadingBlock):
        seen = patient.devices.setdefault(block.device_id, dedup.DeviceSeen())
        new, duplicate, too_old = dedup.split_new(seen, block.sequence)
        # count_nonzero is a fraction of the cost of sum() or any() on the
        # tiny masks of streaming blocks.
        self._duplicates.inc(np.count_nonzero(duplicate))
        if np.count_nonzero(too_old):
            for i in np.flatnonzero(too_old):
                yield self._late_letter(
                    block,
                    i,
                    "too_old_to_deduplicate",
                    f"sequence {block.sequence[i]} is more than "
                    f"{dedup.WINDOW} behind the device's latest",
                )
        return block if np.count_nonzero(new) == len(new) else block.take(new)

    def _late_mask(self, patient: PatientState, block: ReadingBlock):
        """Mark readings whose last window has closed, or return None."""
        config = self._config
        period, size = config.window_period_ms, config.window_size_ms
        if is_small(block):
            late = [
                (time_ms // period) * period + size + config.allowed_lateness_ms
                <= patient.frontier_ms
                for time_ms in block.event_time_ms.tolist()
            ]
            return np.array(late) if any(late) else None
        last_window_end = (block.event_time_ms // period) * period + size
        late = last_window_end + config.allowed_lateness_ms <= (
            patient.frontier_ms
        )
        return late if late.any() else None

    def _drop_late(self, patient: PatientState, block: ReadingBlock):
        late = self._late_mask(patient, block)
        if late is None:
            return block
        config = self._config
        for i in np.flatnonzero(late):
            behind_s = (patient.frontier_ms - block.event_time_ms[i]) / 1000
            yield self._late_letter(
                block,
                i,
                "late",
                f"event_time is {behind_s:.0f} s behind the watermark; "
                f"allowed lateness is {config.allowed_lateness_ms // 1000} s",
            )
        return block.take(~late)

    def _late_letter(self, block, i, reason, detail):
        counter = self._late if reason == "late" else self._too_old
        counter.inc()
        return beam.pvalue.TaggedOutput(
            LATE_TAG,
            validate.dead_letter(
                validate.reading_payload(block, int(i)),
                reason,
                detail,
                block.source,
                int(block.event_time_ms[i]),
            ),
        )

    def _observe(self, patient: PatientState, block: ReadingBlock):
        """Check new readings for sustained conditions and gaps."""
        fresh = _fresh(block, patient.last_checked_ms)
        if fresh is None:
            return
        ordered = sort_by_time(block if fresh is True else block.take(fresh))
        yield from self._gap_event(patient, ordered)
        if not patient.has_ecg:
            patient.has_ecg = _has_heart_rate(ordered)
        for event in fast_checks.check(
            ordered, patient.baseline.snapshot(), patient.runs, patient.has_ecg
        ):
            yield self._event(event)
        patient.baseline.update(ordered)
        patient.last_checked_ms = int(ordered.event_time_ms[-1])
        patient.last_event_ms = max(
            patient.last_event_ms, patient.last_checked_ms
        )
        patient.silence_notified = False

    def _gap_event(self, patient: PatientState, ordered: ReadingBlock):
        # A gap noticed only when readings resume: the silence timer reports
        # gaps in streaming, this catches them in bounded runs.
        if patient.last_checked_ms < 0 or patient.silence_notified:
            return
        gap_ms = int(ordered.event_time_ms[0]) - patient.last_checked_ms
        if gap_ms >= self._config.silence_ms:
            yield self._event(
                _silence_event(
                    ordered.patient_id,
                    patient.last_checked_ms,
                    gap_ms,
                    resumed=True,
                )
            )

    def _summaries(self, patient: PatientState, block: ReadingBlock):
        self._on_time.inc(len(block))
        baseline = patient.baseline.snapshot()
        period_ms = self._config.window_period_ms
        for summary in part_summaries(block, baseline, period_ms):
            yield beam.window.TimestampedValue(
                (block.patient_id, summary), _timestamp(summary.t_ref_ms)
            )

    def _event(self, event: dict):
        return beam.pvalue.TaggedOutput(
            EVENTS_TAG,
            beam.window.TimestampedValue(
                event, _timestamp(event["event_time"])
            ),
        )


class _TrackPatientDoFn(_PatientTracking, beam.DoFn):
    """Patient tracking in keyed state, block by block in arrival order."""

    STATE = ReadModifyWriteStateSpec("patient", PickleCoder())
    SILENCE = TimerSpec("silence", TimeDomain.WATERMARK)
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def setup(self):
        state_cache_sizing.install()

    def process(
        self,
        element,
        state=beam.DoFn.StateParam(STATE),
        silence=beam.DoFn.TimerParam(SILENCE),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        _, block = element
        patient = state.read() or PatientState()
        changed = yield from self._track(patient, block)
        state.write(patient)
        if changed:
            self._arm_timers(patient, silence, expiry)

    def _arm_timers(self, patient: PatientState, silence, expiry):
        config = self._config
        if not config.event_timers or patient.last_event_ms < 0:
            return
        silence.set(_timestamp(patient.last_event_ms + config.silence_ms))
        if patient.expiry_timer_ms < 0:
            period = config.window_period_ms
            first = (patient.last_event_ms // period + 1) * period
            patient.expiry_timer_ms = first
            expiry.set(_timestamp(first))

    @on_timer(EXPIRY)
    def _on_expiry(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        # The chain fires once per window period for as long as the patient
        # is tracked, so the frontier never falls behind the watermark by
        # more than a period.
        patient = state.read()
        if patient is None:
            return
        now_ms = _millis(fired)
        patient.frontier_ms = max(patient.frontier_ms, now_ms)
        if now_ms < patient.last_event_ms + self._config.leave_after_ms:
            patient.expiry_timer_ms = now_ms + self._config.window_period_ms
            expiry.set(_timestamp(patient.expiry_timer_ms))
        else:
            patient.expiry_timer_ms = -1
        state.write(patient)

    @on_timer(SILENCE)
    def _on_silence(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        silence=beam.DoFn.TimerParam(SILENCE),
    ):
        patient = state.read()
        if patient is None:
            return
        now_ms = _millis(fired)
        silent_ms = now_ms - patient.last_event_ms
        if silent_ms >= self._config.leave_after_ms:
            self._cleared.inc()
            state.clear()
            return
        if not patient.silence_notified:
            self._silent.inc()
            patient.silence_notified = True
            state.write(patient)
            yield self._event(
                _silence_event(key, patient.last_event_ms, silent_ms, False)
            )
        silence.set(
            _timestamp(patient.last_event_ms + self._config.leave_after_ms)
        )


def block_order(block: ReadingBlock) -> tuple:
    """Sort key that replays a patient's blocks in one order on any runner.

    Blocks are ordered by their earliest reading's event time; the device,
    sequence number and source break ties.
    """
    first = int(np.argmin(block.event_time_ms))
    return (
        int(block.event_time_ms[first]),
        block.device_id,
        int(block.sequence[first]),
        len(block),
        block.source,
    )


class _TrackSortedPatientDoFn(_PatientTracking, beam.DoFn):
    """Patient tracking over one patient's grouped bounded input, in order.

    A runner delivers the blocks of a bounded run in an order of its own,
    and de-duplication, the fast checks and gap notices all depend on the
    order they see. Replaying each patient's blocks sorted by event time
    gives the same output on every runner. The blocks of one patient are
    held in memory while they are replayed.
    """

    def process(self, element):
        _, blocks = element
        patient = PatientState()
        for block in sorted(blocks, key=block_order):
            yield from self._track(patient, block)


def _fresh(block: ReadingBlock, last_checked_ms: int):
    """Mark readings newer than `last_checked_ms`.

    Returns:
        None when there are none, True when all are, else a boolean mask.
    """
    if is_small(block):
        fresh = [t > last_checked_ms for t in block.event_time_ms.tolist()]
        if not any(fresh):
            return None
        return True if all(fresh) else np.array(fresh)
    fresh = block.event_time_ms > last_checked_ms
    if not fresh.any():
        return None
    return True if fresh.all() else fresh


def _has_heart_rate(block: ReadingBlock) -> bool:
    column = block.values["heart_rate_bpm"]
    if is_small(block):
        return not all(math.isnan(value) for value in column.tolist())
    return bool((~np.isnan(column)).any())


def _silence_event(patient_id, last_ms, gap_ms, resumed) -> dict:
    text = f"no readings for {gap_ms / 1000:.0f} s" + (
        " before readings resumed" if resumed else ""
    )
    return {
        "patient_id": patient_id,
        "kind": "device_silent",
        "tier": "INFO",
        "event_time": int(last_ms + gap_ms),
        "window_start": int(last_ms),
        "anomaly_score": None,
        "model_version": "",
        "reasons": [
            {
                "feature": "seconds_without_readings",
                "value": gap_ms / 1000,
                "baseline": None,
                "deviation": 1.0,
                "text": text,
            }
        ],
    }


class TrackPatients(beam.PTransform):
    """Keyed per-patient state ahead of the sliding windows.

    The input contains `ReadingBlock`s. The output is a tuple with the main
    output of (patient_id, Summary) stamped with event time, `.late` with
    dead-letter records of late and undeduplicable readings, and `.events`
    with fast-path and silence events.

    Args:
        config: Window and timing settings.
        bounded: Group each patient's blocks and replay them in event-time
            order, so that every runner gives the same output. Streaming
            runs leave it False and track blocks in keyed state as they
            arrive.
    """

    def __init__(
        self, config: TrackingConfig = TrackingConfig(), bounded=False
    ):
        super().__init__()
        self._config = config
        self._bounded = bounded

    def expand(self, blocks):
        keyed = blocks | "KeyByPatient" >> beam.Map(
            lambda b: (b.patient_id, b)
        ).with_output_types(tuple[str, ReadingBlock])
        if self._bounded:
            grouped = keyed | "GroupByPatient" >> beam.GroupByKey()
            track = _TrackSortedPatientDoFn(self._config)
            return grouped | "TrackSortedPatients" >> beam.ParDo(
                track
            ).with_outputs(LATE_TAG, EVENTS_TAG, main="summaries")
        return keyed | "TrackPatientState" >> beam.ParDo(
            _TrackPatientDoFn(self._config)
        ).with_outputs(LATE_TAG, EVENTS_TAG, main="summaries")
