"""Alert matching, episode metrics, the static monitor and the CinC score.

Alerts from any detector are reduced to ``Alarm`` records, so that the
pipeline and the baselines are scored by the same code.

Matching rule: an alarm belongs to a labelled episode when it falls in
[start, end + 120 s]. The model path reports once a minute on 5-minute
windows, so its alert for an episode can come up to about two periods
after the episode's end (``make demo`` uses the same slack).
"""

import collections
import dataclasses
import statistics

import numpy as np

from transforms.validate import VALID_RANGES

ACTIONABLE_TIERS = ("MINOR", "SEVERE")
MATCH_SLACK_MS = 120_000
# The static monitor of today's wards: HR above 120 or below 40 bpm, or
# SpO2 below 90 %, one alarm per crossing of each limit.
STATIC_HR_HIGH_BPM = 120.0
STATIC_HR_LOW_BPM = 40.0
STATIC_SPO2_LOW_PCT = 90.0
STATIC_TIER = "STATIC"


@dataclasses.dataclass(frozen=True)
class Alarm:
    """One alert or alarm, reduced to what the scoring needs."""

    time_ms: int
    kind: str
    tier: str


@dataclasses.dataclass(frozen=True)
class Span:
    """One labelled episode of one patient, in event-time milliseconds."""

    patient_id: str
    kind: str
    start_ms: int
    end_ms: int


def pipeline_alarms(alerts, tiers=ACTIONABLE_TIERS) -> dict[str, list]:
    """Group the pipeline's alerts of the given tiers by patient."""
    by_patient = collections.defaultdict(list)
    for alert in alerts:
        if alert["tier"] in tiers:
            by_patient[alert["patient_id"]].append(
                Alarm(alert["event_time"], _direction(alert), alert["tier"])
            )
    for alarms in by_patient.values():
        alarms.sort(key=lambda a: a.time_ms)
    return by_patient


def _direction(alert) -> str:
    """Name an ``hr_deviation`` alert by the direction of the deviation."""
    if alert["kind"] != "hr_deviation" or not alert.get("reasons"):
        return alert["kind"]
    reason = alert["reasons"][0]
    if reason.get("baseline") is None:
        return alert["kind"]
    if reason["value"] >= reason["baseline"]:
        return "heart_rate_high"
    return "heart_rate_low"


def static_alarms(times_ms, heart_rate, spo2) -> list[Alarm]:
    """Run the static-threshold monitor over one patient's readings.

    Values outside the schema's valid ranges are ignored, as the pipeline
    dead-letters them. Readings must be sorted by time.
    """
    times_ms = np.asarray(times_ms, dtype=np.int64)
    hr = valid_values(heart_rate, "heart_rate_bpm")
    saturation = valid_values(spo2, "spo2_pct")
    with np.errstate(invalid="ignore"):
        limits = {
            "heart_rate_high": hr > STATIC_HR_HIGH_BPM,
            "heart_rate_low": hr < STATIC_HR_LOW_BPM,
            "desaturation": saturation < STATIC_SPO2_LOW_PCT,
        }
    alarms = []
    for kind, crossing in limits.items():
        onsets = crossing & ~np.concatenate([[False], crossing[:-1]])
        alarms += [
            Alarm(int(t), kind, STATIC_TIER) for t in times_ms[onsets].tolist()
        ]
    return sorted(alarms, key=lambda a: a.time_ms)


def static_active(times_ms, heart_rate, spo2) -> dict[str, np.ndarray]:
    """Return, per static alarm kind, whether it sounds at each reading."""
    hr = valid_values(heart_rate, "heart_rate_bpm")
    saturation = valid_values(spo2, "spo2_pct")
    with np.errstate(invalid="ignore"):
        return {
            "heart_rate_high": hr > STATIC_HR_HIGH_BPM,
            "heart_rate_low": hr < STATIC_HR_LOW_BPM,
            "desaturation": saturation < STATIC_SPO2_LOW_PCT,
        }


def valid_values(values, channel) -> np.ndarray:
    """Return the values with those outside the valid range as NaN."""
    values = np.asarray(values, dtype=np.float64)
    low, high = VALID_RANGES[channel]
    with np.errstate(invalid="ignore"):
        return np.where((values < low) | (values > high), np.nan, values)


def episode_metrics(spans, alarms_by_patient, hours, detects=None) -> dict:
    """Score alarms against labelled episodes.

    Args:
        spans: Labelled episodes (``Span``) to detect.
        alarms_by_patient: Patient id to its sorted ``Alarm`` list, for
            every monitored patient.
        hours: Monitored patient-hours.
        detects: Optional ``(span, alarm) -> bool``; by default every
            alarm can detect every episode.

    Returns:
        Episode sensitivity, positive predictivity of the alarms, median
        and maximum detection delay in seconds, false alarms (matching no
        episode) and false alarms per patient-hour, also per episode kind.
    """
    by_patient = collections.defaultdict(list)
    for span in spans:
        by_patient[span.patient_id].append(span)
    matched_alarms = 0
    total_alarms = 0
    per_kind = collections.defaultdict(lambda: {"episodes": 0, "delays": []})
    for patient, alarms in alarms_by_patient.items():
        total_alarms += len(alarms)
        own = by_patient.get(patient, [])
        matched_alarms += sum(
            any(_inside(span, alarm, detects) for span in own)
            for alarm in alarms
        )
    for span in spans:
        entry = per_kind[span.kind]
        entry["episodes"] += 1
        hits = [
            a
            for a in alarms_by_patient.get(span.patient_id, [])
            if _inside(span, a, detects)
        ]
        if hits:
            entry["delays"].append((hits[0].time_ms - span.start_ms) / 1000)
    false_alarms = total_alarms - matched_alarms
    result = _summarise(
        sum(e["episodes"] for e in per_kind.values()),
        [d for e in per_kind.values() for d in e["delays"]],
    )
    result.update(
        alarms=total_alarms,
        ppv=matched_alarms / total_alarms if total_alarms else float("nan"),
        false_alarms=false_alarms,
        hours=hours,
        false_per_hour=false_alarms / hours if hours else float("nan"),
        by_kind={
            kind: _summarise(e["episodes"], e["delays"])
            for kind, e in sorted(per_kind.items())
        },
    )
    return result


def quiet_spans(spans, alarms_by_patient) -> int:
    """Count the spans during which (plus the slack) no alarm was raised."""
    return sum(
        not any(
            _inside(span, alarm, None)
            for alarm in alarms_by_patient.get(span.patient_id, [])
        )
        for span in spans
    )


def _inside(span, alarm, detects) -> bool:
    if not span.start_ms <= alarm.time_ms <= span.end_ms + MATCH_SLACK_MS:
        return False
    return detects is None or detects(span, alarm)


def _summarise(episodes: int, delays: list[float]) -> dict:
    return {
        "episodes": episodes,
        "detected": len(delays),
        "sensitivity": len(delays) / episodes if episodes else float("nan"),
        "median_delay_s": statistics.median(delays) if delays else None,
        "max_delay_s": max(delays) if delays else None,
    }


def challenge_score(tp: int, tn: int, fp: int, fn: int) -> float:
    """Return the CinC 2015 score (TP+TN) / (TP+TN+FP+5 FN)."""
    total = tp + tn + fp + 5 * fn
    return (tp + tn) / total if total else float("nan")


def cinc_summary(decisions: list[tuple[str, bool, bool]]) -> dict:
    """Score alarm decisions of the CinC 2015 records.

    Args:
        decisions: (alarm type, alarm is true, detector confirms it).

    Returns:
        TP, TN, FP, FN, the challenge score, and TPR and TNR per type.
    """
    counts = collections.Counter()
    by_type = collections.defaultdict(collections.Counter)
    for alarm_type, truth, confirmed in decisions:
        key = ("T" if truth == confirmed else "F") + ("P" if confirmed else "N")
        counts[key] += 1
        by_type[alarm_type][key] += 1
    tp, tn, fp, fn = (counts[k] for k in ("TP", "TN", "FP", "FN"))
    return {
        "TP": tp,
        "TN": tn,
        "FP": fp,
        "FN": fn,
        "score": challenge_score(tp, tn, fp, fn),
        "by_type": {
            name: {
                "TPR": _ratio(c["TP"], c["TP"] + c["FN"]),
                "TNR": _ratio(c["TN"], c["TN"] + c["FP"]),
            }
            for name, c in sorted(by_type.items())
        },
    }


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")
