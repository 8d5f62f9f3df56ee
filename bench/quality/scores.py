"""Scores of one pipeline run per data set, next to the baselines."""

import pathlib

from bench import nab
from bench.quality import datasets, metrics, nab_eval, runs
from devices import labels

_START_MS = runs.edge_replay.DEFAULT_START_EPOCH_MS
# The primary CinC span starts a minute before the alarm, see
# ``datasets``; the narrow one starts 10 s before the event window.
CINC_SPANS_S = {"primary": (240.0, 300.0), "narrow": (280.0, 300.0)}
CLINICAL_KINDS = (
    "tachycardia",
    "bradycardia",
    "desaturation",
    "irregular_rhythm",
)


def cinc_sounding(replays) -> dict:
    """Return per span name the fast-path kinds sounding per CinC patient.

    Call it while the pipeline variant under test is in effect, because it
    runs the fast path's current condition table.
    """
    prefixes = (f"rec-{labels.CINC2015}-", f"rec-{runs.ABP_TAG}-")
    return {
        name: datasets.fast_path_sounding(replays, span, prefixes)
        for name, span in CINC_SPANS_S.items()
    }


def score_run(data_dir, replays, sim, alerts, event_alerts, sounding) -> dict:
    """Score one pipeline run on every data set.

    Args:
        data_dir: Folder of the labelled data sets.
        replays: Patient id to ``ReplayResult``.
        sim: The simulation.
        alerts: Alerts of the run with the default suppression.
        event_alerts: Alerts of the CinC records with suppression off.
        sounding: Output of ``cinc_sounding`` for the same pipeline.
    """
    return {
        "cinc2015": score_cinc(
            data_dir, alerts, event_alerts, replays, sounding
        ),
        "mitdb": score_rhythms(data_dir, labels.MITBIH, alerts, replays),
        "cpsc2021": score_rhythms(data_dir, labels.CPSC2021, alerts, replays),
        "simulation": score_simulation(alerts, sim),
    }


def score_cinc(data_dir, alerts, event_alerts, replays, sounding) -> dict:
    """Score the CinC 2015 alarms for the pipeline and the static monitor.

    Returns:
        Scores per span name and input variant (``ecg_ppg``, ``abp``) of
        the pipeline with suppression off (``vitalwatch``) and with the
        default suppression (``vitalwatch_suppressed``), also with any
        alert kind accepted, and of the static monitor. Then the scores
        of the demo's rule and of the bedside monitor, and the alerts per
        record.
    """
    episodes = datasets.cinc_episodes(data_dir)
    events = metrics.pipeline_alarms(event_alerts)
    sent = metrics.pipeline_alarms(alerts)
    result = {}
    for span_name, span in CINC_SPANS_S.items():
        result[span_name] = {}
        for variant, tag in (
            ("ecg_ppg", labels.CINC2015),
            ("abp", runs.ABP_TAG),
        ):
            result[span_name][variant] = _cinc_variant(
                episodes, events, sent, replays, tag, span, sounding[span_name]
            )
    # The bedside monitor raised every one of these alarms.
    result["bedside_monitor"] = metrics.cinc_summary(
        [(e.kind, e.present, True) for e in episodes]
    )
    result["per_record"] = _cinc_per_record(episodes, events)
    for patient, kinds in sounding["primary"].items():
        result["per_record"][patient]["sounding"] = sorted(kinds)
    return result


def _cinc_variant(episodes, events, sent, replays, tag, span, sounding):
    def ours(alarms, any_kind=False, sounding=None):
        return metrics.cinc_summary(
            datasets.cinc_pipeline_decisions(
                episodes, alarms, tag, span, any_kind, sounding
            )
        )

    def static(any_kind=False):
        return metrics.cinc_summary(
            datasets.cinc_static_decisions(
                episodes, replays, tag, span, any_kind
            )
        )

    return {
        "vitalwatch": ours(events, sounding=sounding),
        "vitalwatch_events_only": ours(events),
        "vitalwatch_any_kind": ours(events, any_kind=True, sounding=sounding),
        "vitalwatch_suppressed": ours(sent),
        "static": static(),
        "static_any_kind": static(any_kind=True),
    }


def _cinc_per_record(episodes, alarms) -> dict:
    rows = {}
    for episode in episodes:
        for tag in (labels.CINC2015, runs.ABP_TAG):
            patient = datasets.patient_id(tag, episode.record)
            rows[patient] = {
                "alarm": episode.kind,
                "true_alarm": episode.present,
                "alerts": [
                    f"{a.tier} {a.kind} @{(a.time_ms - _START_MS) / 1000:.0f}s"
                    for a in alarms.get(patient, [])
                ],
            }
    return rows


def score_rhythms(data_dir, dataset, alerts, replays) -> dict:
    """Episode metrics of MIT-BIH or CPSC 2021 for pipeline and static."""
    prefix = f"rec-{dataset}-"
    spans = datasets.rhythm_spans(data_dir, dataset)
    patients = [p for p in replays if p.startswith(prefix)]
    hours = datasets.replay_hours(replays, prefix)
    ours = datasets.restrict(metrics.pipeline_alarms(alerts), patients)
    static = datasets.replay_static_alarms(replays, prefix)
    return {
        "vitalwatch": metrics.episode_metrics(spans, ours, hours),
        "static": metrics.episode_metrics(spans, static, hours),
        "vitalwatch_kinds": datasets.count_kinds(ours),
        "static_kinds": datasets.count_kinds(static),
    }


def score_simulation(alerts, sim) -> dict:
    """Episode metrics of the simulated patients for pipeline and static."""
    all_spans = datasets.simulation_spans(sim)
    # Sensitivity is over the clinical episodes. Sensor-off episodes are
    # scored apart, and alarms during motion artefacts count as false.
    spans = [s for s in all_spans if s.kind in CLINICAL_KINDS]
    silent = [s for s in all_spans if s.kind == "sensor_off"]
    patients = [f"sim-p{i:05d}" for i in range(sim.config.n_patients)]
    hours = len(patients) * sim.config.duration_s / 3600
    actionable = datasets.restrict(metrics.pipeline_alarms(alerts), patients)
    with_silence = datasets.restrict(
        metrics.pipeline_alarms(
            alerts, tiers=(*metrics.ACTIONABLE_TIERS, "INFO")
        ),
        patients,
    )
    with_silence = {
        p: [
            a
            for a in alarms
            if a.tier in metrics.ACTIONABLE_TIERS or a.kind == "device_silent"
        ]
        for p, alarms in with_silence.items()
    }
    static = datasets.restrict(datasets.simulation_static_alarms(sim), patients)
    detects = datasets.simulation_detects
    ours = metrics.episode_metrics(spans, actionable, hours, detects)
    # Sensor-off episodes are found by INFO device-silent notices, which
    # are left out of the false-alert count above.
    ours["by_kind"]["sensor_off"] = metrics.episode_metrics(
        silent, with_silence, hours, detects
    )["by_kind"].get("sensor_off")
    static_result = metrics.episode_metrics(spans, static, hours, detects)
    static_result["by_kind"]["sensor_off"] = metrics.episode_metrics(
        silent, static, hours, detects
    )["by_kind"].get("sensor_off")
    motion = [s for s in all_spans if s.kind == "motion_artifact"]
    return {
        "vitalwatch": ours,
        "static": static_result,
        "motion_artifacts": len(motion),
        "motion_quiet": {
            "vitalwatch": metrics.quiet_spans(motion, actionable),
            "static": metrics.quiet_spans(motion, static),
        },
        "vitalwatch_kinds": datasets.count_kinds(actionable),
        "static_kinds": datasets.count_kinds(static),
    }


def score_nab(data_dir) -> dict:
    """Check our NAB scorer and score our detectors on the NAB series."""
    nab_dir = pathlib.Path(data_dir) / "nab"
    corpus = nab_eval.load_corpus(nab_dir)
    profiles = nab.load_profiles(nab_dir / "scoring_profiles.json")
    published = nab_eval.read_published(nab_dir)
    profile = profiles["standard"]
    ours = nab_eval.score_detectors(corpus, profile)
    return {
        "scorer_check": nab_eval.check_scorer(corpus, profiles, published),
        "windows": sum(len(s.windows) for s in corpus),
        "ours": {
            name: {
                "raw": r["raw"],
                "normalised": r["normalised"],
                "files": {f: vars(s) for f, s in r["files"].items()},
            }
            for name, r in ours.items()
        },
        "published_standard_normalised": nab_eval.published_subset_scores(
            published, "standard", profile, corpus
        ),
    }


def score_baseline(data_dir, alarms, replays, sim) -> dict:
    """Score a baseline's alarms (patient id to ``Alarm`` list) per data set.

    Its alarms carry no clinical kind, so on CinC 2015 any alarm in the
    primary span confirms.
    """
    episodes = datasets.cinc_episodes(data_dir)
    result = {
        "cinc2015": metrics.cinc_summary(
            datasets.cinc_pipeline_decisions(
                episodes,
                alarms,
                labels.CINC2015,
                CINC_SPANS_S["primary"],
                any_kind=True,
            )
        )
    }
    for dataset in (labels.MITBIH, labels.CPSC2021):
        prefix = f"rec-{dataset}-"
        patients = [p for p in replays if p.startswith(prefix)]
        result[dataset] = metrics.episode_metrics(
            datasets.rhythm_spans(data_dir, dataset),
            datasets.restrict(alarms, patients),
            datasets.replay_hours(replays, prefix),
        )
    # The baseline may have seen only some of the simulated patients.
    patients = {p for p in alarms if p.startswith("sim-")}
    spans = [
        s
        for s in datasets.simulation_spans(sim)
        if s.patient_id in patients and s.kind in CLINICAL_KINDS
    ]
    result["simulation"] = metrics.episode_metrics(
        spans,
        datasets.restrict(alarms, sorted(patients)),
        len(patients) * sim.config.duration_s / 3600,
        datasets.simulation_detects,
    )
    return result
