"""`make evaluate`: vitalwatch detection quality against labels and baselines.

Steps, all local and bounded:

1. replay the labelled recordings as a wearable's per-second readings,
   and the CinC 2015 records once more with pulse rate from ABP;
2. simulate patients with labelled episodes, as ``make demo`` does;
3. train and promote the demo's Isolation Forest;
4. run the pipeline once over all of it on the FnApiRunner;
5. score the alerts, and the static-threshold monitor and Beam's
   AnomalyDetection on the same readings, per data set. The scores are
   the CinC 2015 challenge score, and episode sensitivity, positive
   predictivity, delay and false alerts per patient-hour. On the NAB
   series, our NAB scorer is checked against NAB's published results
   and scores two detectors built from the pipeline's parts;
6. draw the charts into ``docs/img/`` and write ``results.json`` and
   ``summary.md`` to the output folder.

    python -m bench.evaluate [--data DIR] [--out out/evaluate]
"""

import argparse
import json
import logging
import pathlib
import sys
import time

from bench.quality import (
    beam_baseline,
    datasets,
    experiments,
    reporting,
    runs,
    scores,
)
from devices import labels
from pipelines import demo

_LOGGER = logging.getLogger(__name__)
_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_BENCH_VENV_PYTHON = _REPO_ROOT / ".cache" / "bench-venv" / "bin" / "python"
_STEPS = 6
# Beam's ZScore took about 1 ms per reading on a 2-core machine, so the
# baseline scores the recordings and only this many simulated patients.
_BEAM_SIMULATED_PATIENTS = 50


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate")
    parser.add_argument(
        "--data",
        default=None,
        help="Folder with the labelled data sets. Default: $VITALWATCH_DATA "
        "or ../shared/data.",
    )
    parser.add_argument(
        "--out",
        default="out/evaluate",
        help="Output folder for inputs, alerts and results. "
        "Default out/evaluate.",
    )
    parser.add_argument(
        "--images",
        default="docs/img",
        help="Folder for the PNG charts. Default docs/img.",
    )
    parser.add_argument(
        "--patients",
        type=int,
        default=300,
        help="Simulated patients. Default 300.",
    )
    parser.add_argument(
        "--minutes",
        type=int,
        default=20,
        help="Simulated minutes per patient, at 1 reading/s. Default 20.",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="Simulator seed. Default 7."
    )
    parser.add_argument(
        "--pipeline_arg",
        action="append",
        default=[],
        help="Extra pipeline option, repeatable, for example "
        "--pipeline_arg=--suppression_sec=60. Default none.",
    )
    parser.add_argument(
        "--skip_variants",
        action="store_true",
        help="Do not measure the candidate pipeline changes. Default: "
        "measure them.",
    )
    return parser.parse_args(argv)


def _step(number: int, text: str) -> None:
    print(f"{number}/{_STEPS} {text}", flush=True)


def _progress(text: str) -> None:
    print(f"  {text}", end="\r", flush=True)


def main(argv=None) -> int:
    """Run the evaluation and print its summary."""
    logging.basicConfig(level=logging.WARNING)
    args = _parse(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = labels.resolve_data_dir(args.data)
    started = time.monotonic()

    _step(1, "Replaying the labelled recordings (and CinC with ABP pulse)")
    replays = runs.replay_recordings(data_dir, _progress)
    print()
    _step(2, f"Simulating {args.patients} patients for {args.minutes} min")
    sim = runs.simulate_patients(args.patients, args.minutes, args.seed)
    inputs = runs.write_inputs(replays, sim, out)
    _step(3, "Training the Isolation Forest on simulated history")
    registry_root = demo.train_demo_model(out, args.seed)
    _step(4, "Running the pipeline on the FnApiRunner")
    run_started = time.monotonic()
    alerts, counters, event_alerts = _run_variant(
        out / "runs" / "default", inputs, registry_root, args.pipeline_arg
    )
    run_seconds = time.monotonic() - run_started

    _step(5, "Scoring alerts and baselines per data set")
    results = scores.score_run(
        data_dir,
        replays,
        sim,
        alerts,
        event_alerts,
        scores.cinc_sounding(replays),
    )
    results["settings"] = {
        "patients": args.patients,
        "minutes": args.minutes,
        "seed": args.seed,
        "pipeline_args": args.pipeline_arg,
        "pipeline_run_s": round(run_seconds, 1),
        "alerts": len(alerts),
        "counters": counters,
    }
    print("  scoring the NAB series", flush=True)
    results["nab"] = scores.score_nab(data_dir)
    print("  running Beam AnomalyDetection", flush=True)
    results["beam_anomaly_detection"] = _beam_baseline(
        out, data_dir, replays, sim
    )
    results["variants"] = {}
    if not args.skip_variants:
        results["variants"] = _score_variants(
            out, inputs, registry_root, data_dir, replays, sim, args
        )

    _step(6, f"Drawing charts into {args.images}")
    reporting.draw_charts(
        pathlib.Path(args.images), results, alerts, replays, sim, data_dir
    )
    text = reporting.summary_text(results)
    (out / "results.json").write_text(
        json.dumps(results, indent=1, default=str)
    )
    (out / "summary.md").write_text(text)
    print(text)
    print(f"Total {time.monotonic() - started:.0f} s; results in {out}")
    return 0


def _run_variant(run_dir, inputs, registry_root, pipeline_args):
    """Run over all inputs, then over CinC with repeat suppression off."""
    alerts, counters = runs.run_pipeline(
        inputs["all"], run_dir / "all", registry_root, pipeline_args
    )
    event_alerts, _ = runs.run_pipeline(
        inputs["cinc"],
        run_dir / "cinc_events",
        registry_root,
        [*pipeline_args, "--suppression_sec=0"],
    )
    return alerts, counters, event_alerts


def _score_variants(out, inputs, registry_root, data_dir, replays, sim, args):
    results = {}
    for variant in experiments.VARIANTS:
        print(f"  measuring variant {variant.name}", flush=True)
        with variant.patch():
            alerts, _, event_alerts = _run_variant(
                out / "runs" / variant.name,
                inputs,
                variant.registry_root(registry_root, out),
                [*args.pipeline_arg, *variant.pipeline_args],
            )
            sounding = scores.cinc_sounding(replays)
        results[variant.name] = {
            "description": variant.description,
            **scores.score_run(
                data_dir, replays, sim, alerts, event_alerts, sounding
            ),
        }
    return results


def _beam_baseline(out, data_dir, replays, sim) -> dict:
    """Score Beam's AnomalyDetection if the benchmark venv exists."""
    if not _BENCH_VENV_PYTHON.exists():
        return {
            "ran": False,
            "reason": f"{_BENCH_VENV_PYTHON} is missing, and apache-beam "
            "2.62.0 in .venv has no apache_beam.ml.anomaly",
        }
    series = datasets.reading_series(replays, sim, _BEAM_SIMULATED_PATIENTS)
    alarms = beam_baseline.run(_BENCH_VENV_PYTHON, series, out / "beam")
    return {
        "ran": True,
        "detector": "AnomalyDetection(ZScore(features=[channel])) per "
        "channel, defaults: 1000-value sliding mean and SD, threshold 3",
        "simulated_patients": min(
            _BEAM_SIMULATED_PATIENTS, sim.config.n_patients
        ),
        **scores.score_baseline(data_dir, alarms, replays, sim),
    }


if __name__ == "__main__":
    sys.exit(main())
