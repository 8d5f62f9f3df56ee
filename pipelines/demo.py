"""`make demo`: the pipeline over real recordings and simulated patients.

Steps, all local and bounded, with no server to start:

1. replay every labelled recording in the data folder (MIT-BIH, CinC
   2015, CPSC 2021) as a wearable's per-second readings;
2. simulate patients with labelled episodes and delivery faults;
3. simulate an hour of history, train an Isolation Forest on it with the
   `models` code and promote it in a local registry;
4. run the pipeline on the FnApiRunner over the replays and the
   simulation;
5. print a summary next to the labelled events, and write it with the
   alerts and dead letters under the output folder.

    python -m pipelines.demo [--out out/demo] [--patients 1000]
"""

import argparse
import dataclasses
import json
import logging
import pathlib
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from devices import edge_replay, labels, simulator
from models import registry, train
from pipelines import report, summary
from pipelines.vitals_pipeline import build_pipeline

_LOGGER = logging.getLogger(__name__)

# An hour of history for 200 patients gives ~11,000 training windows,
# plenty for 200 trees of 256 samples.
_HISTORY_PATIENTS = 200
_HISTORY_SECONDS = 3600
# The pipeline's default windows, which the model's features describe.
_WINDOW_SIZE_MS = 300_000
_WINDOW_PERIOD_MS = 60_000


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo")
    parser.add_argument(
        "--out",
        default="out/demo",
        help="Output folder. Default out/demo.",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="Folder with the labelled data sets. Default: $VITALWATCH_DATA "
        "or ../shared/data.",
    )
    parser.add_argument(
        "--patients",
        type=int,
        default=1000,
        help="Simulated patients. Default 1000.",
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
    return parser.parse_args(argv)


def _replay(data_dir, out: pathlib.Path) -> None:
    recordings = labels.list_recordings(data_dir)
    for number, recording in enumerate(recordings, 1):
        result = edge_replay.replay_record(recording)
        paths = edge_replay.write_replay(result, out / "replay")
        paths["batches"].rename(out / "input" / paths["batches"].name)
        print(
            f"  replayed {number}/{len(recordings)} recordings",
            end="\r",
            flush=True,
        )
    print()


def _simulate(args, out: pathlib.Path) -> pathlib.Path:
    # The simulation ends at the current minute, so that its readings
    # stamped a day ahead lie in the future and are rejected as they would
    # be live. With a start in the past they would pass the check.
    now_ms = int(time.time() // 60 * 60_000)
    config = simulator.SimulationConfig(
        n_patients=args.patients,
        duration_s=args.minutes * 60,
        seed=args.seed,
        batch_size=60,
        start_epoch_ms=now_ms - args.minutes * 60_000,
    )
    paths = simulator.write_simulation(
        simulator.simulate(config), out / "simulation"
    )
    (out / "simulation" / "config.json").write_text(
        json.dumps(dataclasses.asdict(config))
    )
    paths["records"].rename(out / "input" / "simulated.batches.avro")
    return paths["ground_truth"]


def train_demo_model(
    out: pathlib.Path,
    seed: int,
    patients: int = _HISTORY_PATIENTS,
    seconds: int = _HISTORY_SECONDS,
) -> str:
    """Train an Isolation Forest on simulated history and promote it.

    The demo, the evaluation and the benchmarks train their model here.
    The history is simulated from a day before the simulator's default
    start, with its own seed, so it is not the data it is scored on.

    Args:
        out: Folder for the history (`history/`) and the registry
            (`registry/`).
        seed: Seed of the forest; the history uses `seed + 1000`.
        patients: Simulated patients in the history.
        seconds: Simulated seconds per patient.

    Returns:
        The registry root that contains the promoted version.
    """
    config = simulator.SimulationConfig(
        n_patients=patients,
        duration_s=seconds,
        seed=seed + 1000,
        batch_size=60,
        start_epoch_ms=simulator.DEFAULT_START_EPOCH_MS - 86_400_000,
    )
    paths = simulator.write_simulation(
        simulator.simulate(config), out / "history"
    )
    rows = train.history_rows(
        [str(paths["records"])], _WINDOW_SIZE_MS, _WINDOW_PERIOD_MS
    )
    bundle = train.fit(rows, seed=seed)
    root = str(out / "registry")
    version = registry.save(root, bundle)
    registry.promote(root, version)
    return root


def _run_pipeline(out: pathlib.Path, registry_root: str):
    options = PipelineOptions(
        [
            f"--source=avro:{out / 'input' / '*.avro'}",
            f"--output_dir={out}",
            f"--model_registry={registry_root}",
        ]
    )
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def main(argv=None) -> int:
    """Run the demo end to end and print its summary."""
    logging.basicConfig(level=logging.WARNING)
    args = _parse(argv)
    out = pathlib.Path(args.out)
    (out / "input").mkdir(parents=True, exist_ok=True)
    for stale in (out / "input").glob("*.avro"):
        stale.unlink()
    started = time.monotonic()
    print("1/4 Replaying the labelled recordings as wearable readings")
    try:
        _replay(args.data, out)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"2/4 Simulating {args.patients} patients for {args.minutes} min")
    truth_path = _simulate(args, out)
    print("3/4 Training the Isolation Forest on simulated history")
    registry_root = train_demo_model(out, args.seed)
    print("4/4 Running the pipeline on the FnApiRunner")
    run_started = time.monotonic()
    result = _run_pipeline(out, registry_root)
    run_seconds = time.monotonic() - run_started
    text = report.demo_report(
        counters=summary.counters(result),
        distributions=summary.distributions(result),
        out=out,
        data_dir=args.data,
        truth_path=truth_path,
        run_seconds=run_seconds,
        total_seconds=time.monotonic() - started,
    )
    (out / "summary.txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
