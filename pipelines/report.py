"""The demo's summary: counters, alerts and labelled events side by side.

It also runs the static-threshold monitor that hospitals use today
(heart rate above 120 or below 40 bpm, SpO2 below 90 %, one alarm per
crossing) over the same readings, so the alert load can be compared.
"""

import collections
import json
import pathlib

import numpy as np

from devices import edge_replay, labels
from schemas import read_container

# An alert counts for a labelled episode when it falls inside the episode
# or within this long after its end (features lag by up to a window).
_MATCH_SLACK_MS = 120_000
_ACTIONABLE = ("MINOR", "SEVERE")


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def static_alarms(input_dir: pathlib.Path) -> collections.Counter:
    """Count static-threshold alarm onsets per patient in the input files."""
    series = collections.defaultdict(list)
    for path in sorted(input_dir.glob("*.avro")):
        for record in read_container(path):
            series[record["patient_id"]].append(record)
    alarms = collections.Counter()
    for patient_id, records in series.items():
        records.sort(key=lambda r: (r["first_sequence"]))
        hr = np.concatenate([_column(r, "heart_rate_bpm") for r in records])
        spo2 = np.concatenate([_column(r, "spo2_pct") for r in records])
        with np.errstate(invalid="ignore"):
            alarming = (hr > 120) | (hr < 40) | (spo2 < 90)
        onsets = alarming & ~np.concatenate([[False], alarming[:-1]])
        alarms[patient_id] = int(onsets.sum())
    return alarms


def _column(record: dict, name: str) -> np.ndarray:
    values = record.get(name) or []
    if not values:
        return np.full(len(record["signal_quality"]), np.nan)
    return np.asarray(values, dtype=float)


def _counter_lines(counters: dict, distributions: dict) -> list[str]:
    dead = {
        k.removeprefix("dead_letters_"): v
        for k, v in counters.items()
        if k.startswith("dead_letters_")
    }
    batch = distributions.get("score_batch_size")
    lines = [
        f"Payloads in:          {counters.get('payloads_in', 0):,}",
        f"Readings in:          {counters.get('readings_in', 0):,}",
        f"Readings valid:       {counters.get('readings_valid', 0):,}",
        f"Duplicates removed:   {counters.get('readings_duplicate', 0):,}",
        f"Late readings:        {counters.get('readings_late', 0):,}",
        "Dead letters by reason: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(dead.items())) or "none"),
        f"Feature rows scored:  {counters.get('rows_scored', 0):,}",
    ]
    if batch is not None and batch.count:
        lines.append(
            f"Score batches:        {batch.count:,}, mean size "
            f"{batch.mean:.0f}, min {batch.min}, max {batch.max}"
        )
    lines.append(
        "Alerts by tier:       "
        + ", ".join(
            f"{tier} {counters.get('alerts_' + tier.lower(), 0):,}"
            for tier in ("INFO", "MINOR", "SEVERE")
        )
        + f" (repeats suppressed {counters.get('alerts_suppressed', 0):,})"
    )
    return lines


def _offset_s(alert: dict) -> float:
    return (alert["event_time"] - edge_replay.DEFAULT_START_EPOCH_MS) / 1000


def _recording_lines(alerts, episodes, static) -> list[str]:
    by_patient = collections.defaultdict(list)
    for alert in alerts:
        by_patient[alert["patient_id"]].append(alert)
    by_record = collections.defaultdict(list)
    for episode in episodes:
        by_record[episode.record].append(episode)
    lines = [
        "",
        "Real recordings: alerts raised next to the labelled events",
        f"{'recording':<24}{'labelled events':<44}{'static':>7}  alerts",
    ]
    for patient_id in sorted(set(by_patient) | set(static)):
        if not patient_id.startswith("rec-"):
            continue
        record = patient_id.rsplit("-", 1)[-1]
        labelled = _describe_episodes(by_record.get(record, []))
        raised = sorted(by_patient.get(patient_id, []), key=_offset_s)
        shown = ", ".join(
            f"{a['tier']} {a['kind']} @{_offset_s(a):.0f}s" for a in raised[:4]
        )
        if len(raised) > 4:
            shown += f", +{len(raised) - 4} more"
        lines.append(
            f"{patient_id:<24}{labelled:<44}{static[patient_id]:>7}  "
            f"{shown or 'none'}"
        )
    return lines


def _describe_episodes(episodes) -> str:
    if not episodes:
        return "none labelled"
    kinds = collections.Counter((e.kind, e.present) for e in episodes)
    parts = []
    for (kind, present), count in sorted(kinds.items()):
        verdict = "" if present else " (FALSE alarm)"
        parts.append(f"{count} {kind}{verdict}")
    return "; ".join(parts)[:43]


def _episode_alerts(episode, alerts) -> list[dict]:
    start, end = episode["event_start_ms"], episode["event_end_ms"]
    return [
        a for a in alerts if start <= a["event_time"] <= end + _MATCH_SLACK_MS
    ]


def simulator_lines(alerts, truth_path: pathlib.Path, static) -> list[str]:
    """Episode sensitivity and false alerts per patient-hour on simulation.

    A clinical episode is caught by an actionable (MINOR or SEVERE) alert
    during it; a sensor-off episode by a device-silent notice. Motion
    artifacts should raise nothing actionable.
    """
    truth = [r for r in _read_jsonl(truth_path) if r["category"] == "episode"]
    by_patient = collections.defaultdict(list)
    for alert in alerts:
        by_patient[alert["patient_id"]].append(alert)
    caught, injected = collections.Counter(), collections.Counter()
    explained = set()
    for episode in truth:
        kind = episode["kind"]
        injected[kind] += 1
        during = _episode_alerts(episode, by_patient[episode["patient_id"]])
        explained.update(a["alert_id"] for a in during)
        if kind == "sensor_off":
            hit = any(a["kind"] == "device_silent" for a in during)
        elif kind == "motion_artifact":
            hit = not any(a["tier"] in _ACTIONABLE for a in during)
        else:
            hit = any(a["tier"] in _ACTIONABLE for a in during)
        caught[kind] += hit
    simulated = [p for p in static if not p.startswith("rec-")]
    hours = len(simulated) * _simulated_hours(truth_path)
    false_alerts = sum(
        1
        for patient in simulated
        for alert in by_patient.get(patient, [])
        if alert["tier"] in _ACTIONABLE and alert["alert_id"] not in explained
    )
    static_total = sum(static[p] for p in simulated)
    lines = ["", "Simulated patients: injected episodes"]
    for kind in sorted(injected):
        verb = {
            "motion_artifact": "quiet (no MINOR/SEVERE)",
            "sensor_off": "noticed as device_silent",
        }.get(kind, "caught by MINOR/SEVERE")
        lines.append(
            f"  {kind:<20}{caught[kind]:>5} / {injected[kind]:<5}{verb}"
        )
    if hours:
        lines.append(
            f"  actionable alerts outside any episode: {false_alerts:,} "
            f"({false_alerts / hours:.2f} per patient-hour); static-"
            f"threshold alarms on the same readings: {static_total:,} "
            f"({static_total / hours:.2f} per patient-hour, episodes "
            "included)"
        )
    return lines


def _simulated_hours(truth_path: pathlib.Path) -> float:
    # The demo writes the simulation's settings next to its ground truth.
    config = truth_path.parent / "config.json"
    if config.exists():
        return json.loads(config.read_text())["duration_s"] / 3600
    return 0.0


def demo_report(
    counters,
    distributions,
    out,
    data_dir,
    truth_path,
    run_seconds,
    total_seconds,
) -> str:
    """Build the demo summary text."""
    alerts = _read_jsonl(out / "alerts.jsonl")
    episodes = labels.load_episodes(data_dir)
    static = static_alarms(out / "input")
    lines = [
        "vitalwatch demo summary",
        f"Pipeline run {run_seconds:.0f} s on the FnApiRunner "
        f"(demo total {total_seconds:.0f} s)",
        *_counter_lines(counters, distributions),
        *_recording_lines(alerts, episodes, static),
        "",
        "CinC 2015: each alarm's label is in the table above; "
        "`make evaluate` computes the challenge score with repeat "
        "suppression off and compatible alert kinds only.",
        *simulator_lines(alerts, truth_path, static),
        "",
        f"Alerts:       {out / 'alerts.jsonl'}",
        f"Dead letters: {out / 'dead_letters.jsonl'}",
    ]
    return "\n".join(lines) + "\n"
