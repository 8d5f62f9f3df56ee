"""Sustained-condition checks on raw readings, for alerts within seconds.

Sliding windows report once a minute, too late for asystole or extreme
bradycardia. These checks run on every block in the stateful stage. A
condition must hold on consecutive good-quality readings for its sustain
time before it raises an event, once per episode. Readings with poor
signal quality neither extend nor break an episode. Thresholds come from
the PhysioNet/CinC 2015 alarm definitions (asystole: no beat for 4 s;
extreme bradycardia: below 40 bpm for 5 beats; extreme tachycardia:
above 140 bpm for 17 beats). Sustain times are those converted to
per-second readings: 3 s of missing heart rate, which the edge reports
only after 4 s without two beats, 5 s below 40 bpm and 8 s above 140
bpm.
"""

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from transforms.features import BASELINE_CHANNELS, MIN_SIGNAL_QUALITY
from transforms.readings import ReadingBlock, is_small

_NO_RUN = -1


@dataclasses.dataclass(frozen=True)
class Condition:
    """One sustained condition.

    Attributes:
        kind: Event kind, also the alert kind.
        tier: Alert tier when the condition fires.
        channel: Channel reported in the reason.
        test: Maps (values of `channel`, baseline snapshot, then the
            values of each channel in `requires`) to whether the
            condition holds. Small blocks pass one float per channel at a
            time, larger ones whole float64 arrays with unjudged readings
            included, so it must accept both and judge each value alone.
        sustain_ms: How long the condition must hold.
        text: Reason sentence template with {value}.
        needs_baseline: Whether the test reads the baseline snapshot, so
            the condition is skipped while the baseline is warming up.
        requires: Further channels the test reads. A reading where one
            of them is missing is not judged.
    """

    kind: str
    tier: str
    channel: str
    test: Callable
    sustain_ms: int
    text: str
    needs_baseline: bool = False
    requires: tuple[str, ...] = ()


def _asystole(heart_rate, baseline):
    # The edge processor reports no heart rate when it found fewer than two
    # beats in the last 4 s. With a clean signal that is asystole, not a
    # loose electrode.
    return np.isnan(heart_rate)


def _hr_deviation(heart_rate, baseline):
    center, scale = baseline[BASELINE_CHANNELS.index("heart_rate_bpm")]
    limit = max(5.0 * scale, 30.0)
    return abs(heart_rate - center) > limit


# Limit of RMSSD / RR interval. In 1,000 simulated patients (seed 1), 99 %
# of sinus readings (RMSSD 20-60 ms at 55-95 bpm) fall below it, and 99 %
# of AF-like readings, past the episode's ramp, above it.
_IRREGULAR_RMSSD_TO_RR = 0.1


def _irregular_rr(rmssd_ms, baseline, heart_rate):
    # The edge reports RMSSD over the last 10 s and the heart rate as a 5 s
    # median, so 60000 / heart rate is the typical RR interval, and
    # RMSSD / RR = RMSSD * heart rate / 60000. One ectopic beat lifts the
    # ratio for about 10 s only. The 30 s sustain time, the conventional
    # minimum length of a documented AF episode, therefore passes isolated
    # ectopics and flags AF, bigeminy and trigeminy.
    return rmssd_ms * heart_rate > _IRREGULAR_RMSSD_TO_RR * 60_000.0


CONDITIONS = (
    Condition(
        "asystole",
        "SEVERE",
        "heart_rate_bpm",
        _asystole,
        3_000,
        "no heartbeat detected on a clean ECG for {duration:.0f} s",
    ),
    Condition(
        "bradycardia",
        "SEVERE",
        "heart_rate_bpm",
        lambda x, _: x < 40,
        5_000,
        "heart rate {value:.0f} bpm, below 40 bpm for {duration:.0f} s",
    ),
    Condition(
        "tachycardia",
        "SEVERE",
        "heart_rate_bpm",
        lambda x, _: x > 140,
        8_000,
        "heart rate {value:.0f} bpm, above 140 bpm for {duration:.0f} s",
    ),
    # The PPG pulse rate catches what a noisy ECG hides: on CinC record
    # b560s the ECG detector counts T waves (about 70 bpm) while the pulse
    # shows the true extreme bradycardia (33-34 bpm).
    Condition(
        "bradycardia",
        "SEVERE",
        "pulse_rate_bpm",
        lambda x, _: x < 40,
        5_000,
        "pulse rate {value:.0f} bpm, below 40 bpm for {duration:.0f} s",
    ),
    Condition(
        "tachycardia",
        "SEVERE",
        "pulse_rate_bpm",
        lambda x, _: x > 140,
        8_000,
        "pulse rate {value:.0f} bpm, above 140 bpm for {duration:.0f} s",
    ),
    Condition(
        "desaturation",
        "SEVERE",
        "spo2_pct",
        lambda x, _: x < 85,
        30_000,
        "SpO2 {value:.0f} %, below 85 % for {duration:.0f} s",
    ),
    Condition(
        "desaturation",
        "MINOR",
        "spo2_pct",
        lambda x, _: x < 90,
        60_000,
        "SpO2 {value:.0f} %, below 90 % for {duration:.0f} s",
    ),
    Condition(
        "hr_deviation",
        "MINOR",
        "heart_rate_bpm",
        _hr_deviation,
        120_000,
        "heart rate {value:.0f} bpm, far from this patient's baseline of "
        "{baseline:.0f} bpm for {duration:.0f} s",
        needs_baseline=True,
    ),
    Condition(
        "irregular_rhythm",
        "MINOR",
        "rr_rmssd_ms",
        _irregular_rr,
        30_000,
        "RR irregular: RMSSD {value:.0f} ms, above 10 % of the RR interval "
        "for {duration:.0f} s",
        requires=("heart_rate_bpm",),
    ),
)


def _judged(block: ReadingBlock, conditions, good, has_ecg: bool):
    """Readings each condition can judge: clean, with its channels present."""
    present = {}
    rows = []
    for condition in conditions:
        if condition.kind == "asystole":
            rows.append(good & has_ecg)
            continue
        row = good
        for name in (condition.channel, *condition.requires):
            if name not in present:
                present[name] = ~np.isnan(block.values[name])
            row = row & present[name]
        rows.append(row)
    return np.vstack(rows)


def _previous_judged_active(judged, active, carry_active):
    """Per reading, whether the condition held at the last judged reading.

    Readings a condition cannot judge neither extend nor break its run, so
    a run continues across them. Before the first judged reading of the
    block, the run carried over from the previous block counts.
    """
    index = np.arange(judged.shape[1])
    last_judged = np.maximum.accumulate(np.where(judged, index, -1), axis=1)
    before = np.empty_like(last_judged)
    before[:, 0] = -1
    before[:, 1:] = last_judged[:, :-1]
    rows = np.arange(judged.shape[0])[:, None]
    previous = active[rows, np.maximum(before, 0)]
    return np.where(before >= 0, previous, carry_active[:, None]), last_judged


def _run_starts(active, opens, times, carry_start):
    """Start time of the run each active reading belongs to."""
    index = np.arange(active.shape[1])
    start_index = np.maximum.accumulate(np.where(opens, index, -1), axis=1)
    return np.where(
        start_index >= 0,
        times[np.maximum(start_index, 0)],
        carry_start[:, None],
    )


def check(
    block: ReadingBlock,
    baseline: np.ndarray,
    runs: dict,
    has_ecg: bool,
) -> list[dict]:
    """Run every condition over a time-sorted block.

    All conditions are evaluated together on (condition, reading) arrays,
    because the cost of a block is mostly the number of NumPy calls, not
    the number of readings. Small blocks are checked reading by reading
    in Python instead, with the same results.

    Args:
        block: Readings sorted by event time.
        baseline: Snapshot from `Baseline.snapshot()`.
        runs: Per condition index, (open run start ms, start of the run that
            already fired), -1 for none; updated in
            place so that episodes continue across blocks.
        has_ecg: Whether this patient's device has reported heart rate.

    Returns:
        New events, as partial Alert records.
    """
    warm = not np.isnan(baseline[0, 0])
    numbers = [
        number
        for number, condition in enumerate(CONDITIONS)
        if warm or not condition.needs_baseline
    ]
    if not numbers or len(block) == 0:
        return []
    if is_small(block):
        return _check_small(block, numbers, baseline, runs, has_ecg)
    conditions = [CONDITIONS[number] for number in numbers]
    good = block.values["signal_quality"] >= MIN_SIGNAL_QUALITY
    judged = _judged(block, conditions, good, has_ecg)
    with np.errstate(invalid="ignore"):
        tests = [
            np.asarray(
                c.test(
                    block.values[c.channel],
                    baseline,
                    *(block.values[name] for name in c.requires),
                )
            )
            for c in conditions
        ]
    active = judged & np.vstack(tests).astype(bool)
    carried = [runs.get(number, (_NO_RUN, _NO_RUN)) for number in numbers]
    carry_start = np.array([start for start, _ in carried], dtype=np.int64)
    fired_start = np.array([fired for _, fired in carried], dtype=np.int64)
    previous, last_judged = _previous_judged_active(
        judged, active, carry_start != _NO_RUN
    )
    times = block.event_time_ms
    starts = _run_starts(active, active & ~previous, times, carry_start)
    sustain = np.array([c.sustain_ms for c in conditions])[:, None]
    duration = np.where(active, times - starts, -1)
    eligible = (duration >= sustain) & (starts != fired_start[:, None])
    return _advance_runs(
        block, numbers, active, starts, eligible, last_judged, runs, baseline
    )


def _advance_runs(
    block, numbers, active, starts, eligible, last_judged, runs, baseline
):
    # NOTE: when two separate episodes of one condition reach their sustain
    # time inside one block, only the first raises an event.
    events = []
    first_hits = np.argmax(eligible, axis=1)
    has_hit = eligible.any(axis=1)
    last = last_judged[:, -1]
    for row, number in enumerate(numbers):
        if last[row] < 0:
            # Nothing judged: the run neither extends nor breaks.
            continue
        condition = CONDITIONS[number]
        fired = runs.get(number, (_NO_RUN, _NO_RUN))[1]
        if has_hit[row]:
            first = first_hits[row]
            start_ms = starts[row, first]
            event = _event(block, condition, first, start_ms, baseline)
            fired = int(start_ms)
            # ECG and PPG may both show the same episode: report it once.
            seen = {(e["kind"], e["tier"]) for e in events}
            if (event["kind"], event["tier"]) not in seen:
                events.append(event)
        if active[row, last[row]]:
            open_start = int(starts[row, last[row]])
            still_fired = fired if open_start == fired else _NO_RUN
            runs[number] = (open_start, still_fired)
        else:
            runs[number] = (_NO_RUN, _NO_RUN)
    return events


def _check_small(block, numbers, baseline, runs, has_ecg) -> list[dict]:
    """Apply the rules of `check` reading by reading, for small blocks."""
    times = block.event_time_ms.tolist()
    good = [
        quality >= MIN_SIGNAL_QUALITY
        for quality in block.values["signal_quality"].tolist()
    ]
    columns = {}
    events = []
    for number in numbers:
        condition = CONDITIONS[number]
        channels = []
        for name in (condition.channel, *condition.requires):
            if name not in columns:
                columns[name] = block.values[name].tolist()
            channels.append(columns[name])
        carried = runs.get(number, (_NO_RUN, _NO_RUN))
        outcome = _follow_run(
            condition, channels, times, good, has_ecg, carried, baseline
        )
        if outcome is None:
            # Nothing judged: the run neither extends nor breaks.
            continue
        open_start, hit = outcome
        fired = carried[1]
        if hit is not None:
            index, start_ms = hit
            event = _event(block, condition, index, start_ms, baseline)
            fired = start_ms
            if (event["kind"], event["tier"]) not in {
                (e["kind"], e["tier"]) for e in events
            }:
                events.append(event)
        still_fired = fired if open_start == fired else _NO_RUN
        runs[number] = (open_start, still_fired)
    return events


def _follow_run(condition, channels, times, good, has_ecg, carried, baseline):
    """Follow one condition's run through the judged readings of a block.

    `channels` lists the values of the condition's channel, then those of
    each channel in `requires`, as Python floats.

    Returns:
        None when no reading was judged. Otherwise the start of the run
        open at the last judged reading (_NO_RUN if none), and (index,
        run start) of the first reading whose run reached its sustain
        time and had not fired before the block, or None.
    """
    start, fired_before = carried
    judged_any = False
    hit = None
    for index, value in enumerate(channels[0]):
        if not good[index]:
            continue
        required = [values[index] for values in channels[1:]]
        if condition.kind == "asystole":
            if not has_ecg:
                continue
        elif math.isnan(value) or any(map(math.isnan, required)):
            continue
        judged_any = True
        if not condition.test(value, baseline, *required):
            start = _NO_RUN
            continue
        if start == _NO_RUN:
            start = times[index]
        sustained = times[index] - start >= condition.sustain_ms
        if hit is None and sustained and start != fired_before:
            hit = (index, start)
    return (start, hit) if judged_any else None


def _event(block, condition, index, start_ms, baseline) -> dict:
    time_ms = int(block.event_time_ms[index])
    value = float(block.values[condition.channel][index])
    center = None
    if condition.channel in BASELINE_CHANNELS:
        known = baseline[BASELINE_CHANNELS.index(condition.channel), 0]
        center = None if np.isnan(known) else float(known)
    duration_s = (time_ms - int(start_ms)) / 1000
    text = condition.text.format(
        value=value, duration=duration_s, baseline=center or 0.0
    )
    return {
        "patient_id": block.patient_id,
        "kind": condition.kind,
        "tier": condition.tier,
        "event_time": time_ms,
        "window_start": int(start_ms),
        "anomaly_score": None,
        "model_version": "",
        "reasons": [
            {
                "feature": condition.channel,
                "value": 0.0 if np.isnan(value) else value,
                "baseline": center,
                "deviation": duration_s * 1000 / condition.sustain_ms,
                "text": text,
            }
        ],
    }
