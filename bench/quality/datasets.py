"""Per-data-set scoring: CinC 2015 alarms, rhythm episodes, simulation.

CinC 2015 confirmation rule. The monitor's alarm sounds at 300 s and its
triggering event starts between 290 s and 300 s. A detector confirms the
alarm when it raises an alarm of a kind compatible with the alarm type
(``COMPATIBLE_KINDS``) in [240 s, 300 s]:

* the end is the alarm time, so only data the monitor had when it
  alarmed is used, as in the challenge's real-time setting. Records
  ending in ``l`` go on to 330 s, and that extra half minute is unused;
* the start is a minute before the alarm. The fast path raises one
  event per run of a sustained condition, so a condition that began
  before the event window shows only as that first event. Earlier
  arrhythmias in the records are not annotated. A minute is also the
  model path's window period. The narrow span [280 s, 300 s] is scored
  as well: the event window, plus the edge replay's 5 s rate median and
  the fast path's 3-8 s sustain time.

The pipeline confirms with a MINOR or SEVERE event in the span, scored
on a run with repeat suppression off, because suppression is a delivery
policy and a condition alerted minutes earlier would still be on screen.
A fast-path condition that fired before the span and still lasts in it
confirms too (``fast_path_sounding``). The static monitor confirms when
a compatible limit is crossed at any reading in the span, even if its
alarm started earlier, which favours the baseline.
"""

import collections

import numpy as np

from bench.quality import metrics
from devices import edge_replay, labels
from transforms import fast_checks, features, readings

CINC_SPAN_S = (240.0, 300.0)
# Alert kinds that are evidence for each CinC alarm type. A wearable has
# no QRS morphology, so VT and VF show only as a fast or absent heart rate,
# an irregular rhythm or lost pulse.
COMPATIBLE_KINDS = {
    "asystole": {"asystole", "bradycardia", "heart_rate_low"},
    "extreme_bradycardia": {"bradycardia", "asystole", "heart_rate_low"},
    "extreme_tachycardia": {"tachycardia", "heart_rate_high"},
    "ventricular_tachycardia": {
        "tachycardia",
        "heart_rate_high",
        "irregular_rhythm",
    },
    "ventricular_flutter_fibrillation": {
        "asystole",
        "tachycardia",
        "heart_rate_high",
        "heart_rate_low",
        "irregular_rhythm",
        "signal_disagreement",
    },
}
_START_MS = edge_replay.DEFAULT_START_EPOCH_MS


def patient_id(tag: str, record: str) -> str:
    """Return the edge replay's patient id of a record."""
    return f"rec-{tag}-{record}"


def cinc_episodes(data_dir) -> list:
    """Return the CinC 2015 alarm episodes, one per record."""
    return [
        e
        for e in labels.load_episodes(data_dir)
        if e.label_source == "cinc2015_alarm"
    ]


def cinc_pipeline_decisions(
    episodes,
    alarms_by_patient,
    tag,
    span_s=CINC_SPAN_S,
    any_kind=False,
    sounding=None,
):
    """Decide for each alarm whether the pipeline confirms it.

    Args:
        episodes: The CinC alarm episodes.
        alarms_by_patient: Patient id to the pipeline's alarms.
        tag: Data-set tag of the replay, ``cinc2015`` or the ABP variant.
        span_s: (start, end) of the confirmation span, in seconds.
        any_kind: Accept alarms of any kind.
        sounding: Optional patient id to the fast-path kinds still
            sounding in the span, see ``fast_path_sounding``.
    """
    low, high = (_START_MS + int(s * 1000) for s in span_s)
    sounding = sounding or {}
    decisions = []
    for episode in episodes:
        patient = patient_id(tag, episode.record)
        kinds = COMPATIBLE_KINDS[episode.kind]
        confirmed = any(
            low <= a.time_ms <= high and (any_kind or a.kind in kinds)
            for a in alarms_by_patient.get(patient, [])
        ) or any(
            any_kind or kind in kinds for kind in sounding.get(patient, ())
        )
        decisions.append((episode.kind, episode.present, confirmed))
    return decisions


def cinc_static_decisions(
    episodes, replays, tag, span_s=CINC_SPAN_S, any_kind=False
):
    """Decide for each alarm whether the static monitor sounds in the span."""
    decisions = []
    for episode in episodes:
        result = replays[patient_id(tag, episode.record)]
        seconds = np.arange(len(result))
        in_span = (seconds >= span_s[0]) & (seconds <= span_s[1])
        active = metrics.static_active(
            seconds,
            result.columns["heart_rate_bpm"],
            result.columns["spo2_pct"],
        )
        kinds = COMPATIBLE_KINDS[episode.kind]
        confirmed = any(
            bool((sounding & in_span).any())
            for kind, sounding in active.items()
            if any_kind or kind in kinds
        )
        decisions.append((episode.kind, episode.present, confirmed))
    return decisions


def rhythm_spans(data_dir, dataset: str) -> list:
    """Return the labelled non-normal rhythm episodes of MIT-BIH or CPSC."""
    source = {labels.MITBIH: "mitdb_atr", labels.CPSC2021: "cpsc2021_atr"}
    return [
        metrics.Span(
            patient_id(dataset, e.record),
            e.kind,
            *e.event_time_ms(_START_MS),
        )
        for e in labels.load_episodes(data_dir)
        if e.label_source == source[dataset]
    ]


def replay_static_alarms(replays, prefix: str) -> dict[str, list]:
    """Run the static monitor over the replays whose id starts with prefix."""
    alarms = {}
    for patient, result in replays.items():
        if not patient.startswith(prefix):
            continue
        times = result.start_epoch_ms + 1000 * np.arange(len(result))
        alarms[patient] = metrics.static_alarms(
            times,
            result.columns["heart_rate_bpm"],
            result.columns["spo2_pct"],
        )
    return alarms


def replay_hours(replays, prefix: str) -> float:
    """Return the recorded hours of the replays whose id starts with prefix."""
    return sum(
        len(result) / 3600
        for patient, result in replays.items()
        if patient.startswith(prefix)
    )


def restrict(alarms_by_patient, patients) -> dict[str, list]:
    """Keep the given patients, with an empty list for the silent ones."""
    return {p: alarms_by_patient.get(p, []) for p in patients}


def simulation_spans(sim) -> list:
    """Return the simulated episodes in device event time."""
    return [
        metrics.Span(
            row["patient_id"],
            row["kind"],
            row["event_start_ms"],
            row["event_end_ms"],
        )
        for row in sim.ground_truth_rows()
        if row["category"] == "episode"
    ]


def simulation_static_alarms(sim) -> dict[str, list]:
    """Run the static monitor over every simulated patient's readings."""
    columns = sim.columns
    patients = columns["patient_index"]
    bounds = np.flatnonzero(np.diff(patients)) + 1
    alarms = {}
    for rows in np.split(np.arange(len(patients)), bounds):
        if len(rows) == 0:
            continue
        order = rows[np.argsort(columns["event_time_ms"][rows], kind="stable")]
        patient = f"sim-p{int(patients[rows[0]]):05d}"
        alarms[patient] = metrics.static_alarms(
            columns["event_time_ms"][order],
            columns["heart_rate_bpm"][order],
            columns["spo2_pct"][order],
        )
    return alarms


def simulation_detects(span, alarm) -> bool:
    """Whether an alarm can detect a simulated episode of this kind.

    A sensor-off episode is detected by a device-silent notice. Motion
    artefacts should raise nothing, so no alarm detects one and every
    alarm during one counts as false.
    """
    if span.kind == "sensor_off":
        return alarm.kind == "device_silent"
    if span.kind == "motion_artifact":
        return False
    return alarm.kind != "device_silent"


def count_kinds(alarms_by_patient) -> dict[str, int]:
    """Count alarms per kind."""
    counts = collections.Counter(
        a.kind for alarms in alarms_by_patient.values() for a in alarms
    )
    return dict(sorted(counts.items()))


def reading_series(replays, sim, max_simulated: int) -> dict[str, tuple]:
    """Return patient id to (times ms, heart rate, SpO2), sorted by time.

    Args:
        replays: Patient id to ``ReplayResult``; all are included.
        sim: The simulation.
        max_simulated: Include only the first this many simulated
            patients.
    """
    series = {}
    for patient, result in replays.items():
        times = result.start_epoch_ms + 1000 * np.arange(len(result))
        series[patient] = (
            times,
            result.columns["heart_rate_bpm"],
            result.columns["spo2_pct"],
        )
    columns = sim.columns
    patients = columns["patient_index"]
    for index in np.unique(patients)[:max_simulated].tolist():
        rows = np.flatnonzero(patients == index)
        rows = rows[np.argsort(columns["event_time_ms"][rows], kind="stable")]
        series[f"sim-p{index:05d}"] = (
            columns["event_time_ms"][rows],
            metrics.valid_values(
                columns["heart_rate_bpm"][rows], "heart_rate_bpm"
            ),
            metrics.valid_values(columns["spo2_pct"][rows], "spo2_pct"),
        )
    return series


def fast_path_sounding(replays, span_s, prefixes) -> dict[str, set]:
    """Find the fast-path conditions still sounding during a CinC span.

    The fast path raises one event per run of a condition, so a condition
    that began before the span and still lasts in it shows no event
    there. This runs ``transforms.fast_checks.check`` over each replay one
    reading at a time, as the stateful stage does, and returns per patient
    the kinds whose run had fired and was still open at a reading in the
    span. This is the state the static monitor is judged by.

    NOTE: the checks run without the patient's rolling baseline, so the
    baseline-relative ``hr_deviation`` check is left out here.
    """
    sounding = {}
    for patient, result in replays.items():
        if patient.startswith(prefixes):
            sounding[patient] = _sounding_kinds(result, span_s)
    return sounding


def _sounding_kinds(result, span_s) -> set:
    runs, kinds, has_ecg = {}, set(), False
    baseline = features.no_baseline()
    for second, record in enumerate(result.readings()):
        has_ecg |= record["heart_rate_bpm"] is not None
        block = readings.block_from_reading(record)
        fast_checks.check(block, baseline, runs, has_ecg)
        if span_s[0] <= second <= span_s[1]:
            kinds.update(
                fast_checks.CONDITIONS[number].kind
                for number, (_, fired_start) in runs.items()
                if fired_start != -1
            )
    return kinds
