"""Summary text and charts of the detection-quality evaluation."""

import numpy as np

from bench.quality import datasets, metrics, plots, runs
from bench.quality.scores import CINC_SPANS_S as _SPANS
from devices import labels

_START_MS = runs.edge_replay.DEFAULT_START_EPOCH_MS


def summary_text(results: dict) -> str:
    """Format the results as Markdown tables."""
    beam = results["beam_anomaly_detection"]
    lines = ["# Detection quality", ""]
    lines += _cinc_lines(results["cinc2015"], beam)
    for key, title in (
        ("mitdb", "MIT-BIH 100 and 208 (ventricular trigeminy)"),
        ("cpsc2021", "CPSC 2021 (atrial fibrillation)"),
        ("simulation", "Simulated patients"),
    ):
        lines += _episode_lines(title, results[key], beam.get(key))
    lines += _nab_lines(results["nab"])
    if not beam["ran"]:
        lines += [f"Beam AnomalyDetection: not run, {beam['reason']}.", ""]
    lines += _variant_lines(results)
    return "\n".join(lines)


def _cinc_lines(cinc: dict, beam: dict) -> list[str]:
    lines = [
        "## CinC 2015 alarms",
        "",
        "| detector | inputs | span s | TP | TN | FP | FN | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("vitalwatch", "ecg_ppg", "ECG+PPG"),
        ("vitalwatch", "abp", "ECG+PPG, pulse from ABP"),
        ("vitalwatch_events_only", "ecg_ppg", "ECG+PPG, events only"),
        ("vitalwatch_suppressed", "ecg_ppg", "ECG+PPG, repeats suppressed"),
        ("vitalwatch_any_kind", "ecg_ppg", "ECG+PPG, any alert kind"),
        ("static", "ecg_ppg", "ECG+PPG"),
        ("static_any_kind", "ecg_ppg", "ECG+PPG, any limit"),
    ]
    for span in ("primary", "narrow"):
        bounds = "-".join(f"{b:.0f}" for b in _SPANS[span])
        for name, variant, inputs in rows:
            lines.append(
                _cinc_row(name, inputs, bounds, cinc[span][variant][name])
            )
    lines.append(
        _cinc_row("bedside monitor", "all", "-", cinc["bedside_monitor"])
    )
    if beam["ran"]:
        lines.append(
            _cinc_row("Beam ZScore", "ECG+PPG", "240-300", beam["cinc2015"])
        )
    lines += ["", "| alarm type | vitalwatch TPR/TNR | static TPR/TNR |"]
    lines.append("|---|---|---|")
    ours = cinc["primary"]["ecg_ppg"]["vitalwatch"]["by_type"]
    static = cinc["primary"]["ecg_ppg"]["static"]["by_type"]
    for kind in ours:
        lines.append(
            f"| {kind} | {ours[kind]['TPR']:.0f}/{ours[kind]['TNR']:.0f} | "
            f"{static[kind]['TPR']:.0f}/{static[kind]['TNR']:.0f} |"
        )
    lines.append("")
    return lines


def _cinc_row(name, inputs, span, s) -> str:
    return (
        f"| {name} | {inputs} | {span} | {s['TP']} | {s['TN']} | {s['FP']} "
        f"| {s['FN']} | {s['score']:.3f} |"
    )


def _variant_lines(results: dict) -> list[str]:
    if not results["variants"]:
        return []
    lines = [
        "## Candidate pipeline changes",
        "",
        "| variant | CinC score | MIT-BIH sens / false per h | CPSC sens / "
        "false per h | simulation sens / false per h |",
        "|---|---|---|---|---|",
        _variant_row("default pipeline", results),
    ]
    for name, variant in results["variants"].items():
        lines.append(_variant_row(f"{name}: {variant['description']}", variant))
    lines.append("")
    return lines


def _variant_row(label: str, r: dict) -> str:
    cinc = r["cinc2015"]["primary"]
    cells = [
        f"{cinc['ecg_ppg']['vitalwatch']['score']:.3f} "
        f"(ABP {cinc['abp']['vitalwatch']['score']:.3f})"
    ]
    for key in ("mitdb", "cpsc2021", "simulation"):
        m = r[key]["vitalwatch"]
        cells.append(f"{m['sensitivity']:.2f} / {m['false_per_hour']:.2f}")
    return f"| {label} | " + " | ".join(cells) + " |"


def _episode_lines(title: str, result: dict, beam: dict | None) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| detector | episodes | sensitivity | PPV | median delay s | "
        "false alerts | per patient-hour | hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shown = {"vitalwatch": result["vitalwatch"], "static": result["static"]}
    if beam is not None:
        shown["Beam ZScore"] = beam
    for name, m in shown.items():
        lines.append(
            f"| {name} | {m['detected']}/{m['episodes']} | "
            f"{m['sensitivity']:.2f} | {m['ppv']:.2f} | "
            f"{_num(m['median_delay_s'])} | {m['false_alarms']} | "
            f"{m['false_per_hour']:.2f} | {m['hours']:.2f} |"
        )
    if "motion_artifacts" in result:
        quiet = result["motion_quiet"]
        lines += [
            "",
            f"Motion-artefact episodes with no alarm: vitalwatch "
            f"{quiet['vitalwatch']}/{result['motion_artifacts']}, static "
            f"{quiet['static']}/{result['motion_artifacts']} (alarms during "
            "them count as false alerts).",
        ]
    kinds = result["vitalwatch"]["by_kind"]
    if len(kinds) > 1:
        lines += ["", "| kind | vitalwatch | delay s | static | delay s |"]
        lines.append("|---|---|---|---|---|")
        static = result["static"]["by_kind"]
        for kind, m in kinds.items():
            if kind == "motion_artifact":
                continue
            s = static.get(kind) or {}
            lines.append(
                f"| {kind} | {m['detected']}/{m['episodes']} | "
                f"{_num(m['median_delay_s'])} | {s.get('detected')}/"
                f"{s.get('episodes')} | {_num(s.get('median_delay_s'))} |"
            )
    lines.append("")
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _nab_lines(result: dict) -> list[str]:
    check = result["scorer_check"]
    lines = [
        "## NAB (6 series, standard profile)",
        "",
        f"Scorer check over {check['published_rows']} published rows: "
        f"count mismatches {len(check['count_mismatches'])}; null detector "
        f"max |diff| {check['null_max_diff']:.3g} ({check['null_rows']} "
        f"rows); no-window series max |diff| "
        f"{check['no_window_max_diff']:.3g} ({check['no_window_rows']} "
        f"rows); single-detection rows: implied detection row off a whole "
        f"row by up to {check['single_detection_max_row_offset']:.2g} "
        f"({check['single_detection_rows']} rows).",
        "",
        "| detector | normalised score (these 6 series) |",
        "|---|---|",
    ]
    for name, r in result["ours"].items():
        lines.append(f"| ours: {name} | {r['normalised']:.1f} |")
    published = result["published_standard_normalised"]
    for name, score in sorted(published.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} (published) | {score:.1f} |")
    lines.append("")
    return lines


def draw_charts(folder, results, alerts, replays, sim, data_dir) -> None:
    """Draw the per-recording and per-data-set charts."""
    alarms = metrics.pipeline_alarms(alerts)
    episodes = labels.load_episodes(data_dir)
    for recording in labels.list_recordings(data_dir):
        _recording_chart(folder, recording, replays, alarms, episodes)
    _simulation_charts(folder, sim, alerts)
    _comparison_charts(folder, results)


def _recording_chart(folder, recording, replays, alarms, episodes):
    tag = recording.dataset
    patient = datasets.patient_id(tag, recording.name)
    result = replays[patient]
    lines = [
        ("heart rate (ECG)", result.columns["heart_rate_bpm"]),
        ("pulse rate (PPG)", result.columns["pulse_rate_bpm"]),
    ]
    if tag == labels.CINC2015 and runs.has_abp(recording):
        variant = replays[datasets.patient_id(runs.ABP_TAG, recording.name)]
        lines.append(("pulse rate (ABP)", variant.columns["pulse_rate_bpm"]))
    spans = [
        (
            e.start_s,
            e.end_s,
            "tab:red" if e.present else "tab:green",
            e.kind if e.present else f"{e.kind} (false alarm)",
        )
        for e in episodes
        if e.record == recording.name
    ]
    static = datasets.replay_static_alarms({patient: result}, patient)
    plots.recording(
        plots.image_path(folder, tag, recording.name),
        f"{tag} {recording.name}: rates, labelled episodes and alarms",
        _START_MS,
        lines,
        spans,
        alarms.get(patient, []),
        static[patient],
    )


def _simulation_charts(folder, sim, alerts):
    """Plot one simulated patient per episode kind."""
    alarms = metrics.pipeline_alarms(
        alerts, tiers=(*metrics.ACTIONABLE_TIERS, "INFO")
    )
    static = datasets.simulation_static_alarms(sim)
    shown = set()
    columns = sim.columns
    for row in sim.ground_truth_rows():
        if row["category"] != "episode" or row["kind"] in shown:
            continue
        shown.add(row["kind"])
        index = int(row["patient_id"].removeprefix("sim-p"))
        rows = np.flatnonzero(columns["patient_index"] == index)
        rows = rows[np.argsort(columns["sequence"][rows])]
        start_ms = int(columns["event_time_ms"][rows[0]])
        plots.recording(
            plots.image_path(folder, "simulated", row["kind"]),
            f"simulated patient with {row['kind']}",
            start_ms,
            [
                ("heart rate", columns["heart_rate_bpm"][rows]),
                ("SpO2 (%)", columns["spo2_pct"][rows]),
            ],
            [
                (
                    (row["event_start_ms"] - start_ms) / 1000,
                    (row["event_end_ms"] - start_ms) / 1000,
                    "tab:red",
                    row["kind"],
                )
            ],
            alarms.get(row["patient_id"], []),
            static.get(row["patient_id"], []),
        )


def _comparison_charts(folder, results):
    cinc = results["cinc2015"]["primary"]
    beam = results["beam_anomaly_detection"]
    groups = {
        "vitalwatch ECG+PPG": cinc["ecg_ppg"]["vitalwatch"],
        "vitalwatch +ABP": cinc["abp"]["vitalwatch"],
        "static thresholds": cinc["ecg_ppg"]["static"],
        "bedside monitor": results["cinc2015"]["bedside_monitor"],
    }
    if beam["ran"]:
        groups["Beam ZScore"] = beam["cinc2015"]
    plots.comparison(
        plots.image_path(folder, "cinc2015", "comparison"),
        "CinC 2015: challenge score (TP+TN)/(TP+TN+FP+5 FN)",
        groups,
        [("score", "challenge score")],
    )
    for key in ("mitdb", "cpsc2021", "simulation"):
        groups = {
            "vitalwatch": results[key]["vitalwatch"],
            "static thresholds": results[key]["static"],
        }
        if beam["ran"]:
            groups["Beam ZScore"] = beam[key]
        plots.comparison(
            plots.image_path(folder, key, "comparison"),
            f"{key}: episode sensitivity and false alerts",
            groups,
            [
                ("sensitivity", "episode sensitivity"),
                ("ppv", "positive predictivity"),
                ("false_per_hour", "false alerts per patient-hour"),
            ],
        )
    nab = results["nab"]
    groups = {
        f"ours: {name}": {"score": r["normalised"]}
        for name, r in nab["ours"].items()
    }
    groups.update(
        {
            name: {"score": score}
            for name, score in sorted(
                nab["published_standard_normalised"].items(),
                key=lambda kv: -kv[1],
            )
        }
    )
    plots.comparison(
        plots.image_path(folder, "nab", "comparison"),
        "NAB standard profile, normalised over the 6 series",
        groups,
        [("score", "NAB score")],
    )
