"""Readings per second of the whole pipeline, against a floor and Beam's AD.

Input: simulated patients at 1 Hz (`devices.simulator`, default fault
rates), encoded as single-object Avro payloads and fed with `beam.Create`,
so that file reading is not part of the number. The model is an Isolation
Forest trained on simulated history and promoted in a local registry.

Three measurements run side by side, interleaved, on the same readings:

* pipeline: `build_pipeline` on the FnApiRunner (decode, validate, patient
  state, sliding windows, batched scoring, alert suppression, alerts
  written as JSON lines), timed from `run()` to the end of
  `wait_until_finish()`, in wall and in CPU seconds;
* floor: the same steps without Beam. The parsing and patient-state DoFns
  are called directly, windows are merged with `transforms.features` and
  rows scored with the same `ModelBundle` and `explain`;
* beam_ad: Beam's `AnomalyDetection` with a PyOD Isolation Forest on every
  reading, run by `bench/beam_anomaly.py` in `.cache/bench-venv`.

Then it sweeps readings per VitalBatch (1, 10, 60, 300 and 600, which is
all 10 minutes of a patient in one payload at the default --minutes) and
`--max_score_batch`, and writes JSON results and PNG plots.

    .venv/bin/python -m bench.throughput --out out/bench
"""

import argparse
import contextlib
import json
import pathlib
import subprocess
import sys
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from bench import common, flink_cluster, floor
from models import registry
from pipelines import summary
from pipelines.vitals_pipeline import build_pipeline
from runners.cli import FLINK_DEFAULTS
from transforms.readings import CHANNELS

_REPO = pathlib.Path(__file__).resolve().parents[1]
_BENCH_PYTHON = _REPO / ".cache" / "bench-venv" / "bin" / "python"
# The VitalBatch schema sets no maximum. 600 readings is the largest batch
# the default 10 simulated minutes at 1 Hz fill.
_BATCH_SIZES = (1, 10, 60, 300, 600)
_SCORE_BATCHES = (1, 16, 256, 4096)
# Names, in the order of flink_cluster.JAVA_PROCESS_MARKERS, under which
# the CPU time of each Java process of a Flink run is recorded.
_JAVA_PROCESSES = ("taskmanager", "jobmanager", "job_server")


def _run_measured(
    payloads, registry_root, max_score_batch, out_dir, flink_args=None
):
    """Run the pipeline once, on the FnApiRunner or with `flink_args`.

    On Flink the CPU seconds add those of the job server and the cluster's
    Java processes to this process's, which runs the SDK harness.

    Returns:
        (wall seconds, CPU seconds, counters, score batch sizes).
    """
    options = PipelineOptions(
        [
            *(flink_args or []),
            f"--model_registry={registry_root}",
            f"--max_score_batch={max_score_batch}",
            f"--output_dir={out_dir}",
        ]
    )
    if flink_args:
        pipeline = beam.Pipeline(options=options)
    else:
        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    source = pipeline | "CreatePayloads" >> beam.Create(payloads)
    build_pipeline(pipeline, options, payloads=source)
    holder = {}

    def run():
        holder["result"] = pipeline.run()
        holder["result"].wait_until_finish()

    java_before = flink_cluster.java_cpu_seconds_by_marker()
    seconds, cpu_seconds, _ = common.timed_cpu(run)
    result = holder["result"]
    batches = summary.distributions(result).get("score_batch_size")
    counters = summary.counters(result)
    if flink_args:
        counters["python_cpu_ms"] = round(cpu_seconds * 1000)
        java_after = flink_cluster.java_cpu_seconds_by_marker()
        for marker, name in zip(java_after, _JAVA_PROCESSES, strict=True):
            java_cpu_seconds = java_after[marker] - java_before[marker]
            counters[f"{name}_cpu_ms"] = round(java_cpu_seconds * 1000)
            cpu_seconds += java_cpu_seconds
    return seconds, cpu_seconds, counters, _distribution(batches)


def _distribution(value) -> dict | None:
    if value is None:
        return None
    return {
        "count": value.count,
        "min": value.min,
        "mean": round(value.mean, 1) if value.count else None,
        "max": value.max,
    }


def _write_readings(sim, path: pathlib.Path) -> None:
    columns = sim.columns
    values = np.column_stack(
        [np.asarray(columns[name], dtype=np.float64) for name in CHANNELS]
    )
    np.savez(path, patients=columns["patient_index"], values=values)


def _run_beam_ad(readings_path: pathlib.Path) -> dict:
    if not _BENCH_PYTHON.exists():
        raise FileNotFoundError(
            f"{_BENCH_PYTHON} is missing; create it with "
            "'make bench-venv' (apache-beam with apache_beam.ml.anomaly "
            "and pyod)"
        )
    completed = subprocess.run(
        [
            str(_BENCH_PYTHON),
            str(_REPO / "bench" / "beam_anomaly.py"),
            str(readings_path),
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare(args, root, work, flink_args=None) -> dict:
    """Time pipeline, floor and Beam's AD interleaved on the same readings.

    With `flink_args`, the pipeline also runs on the Flink cluster in each
    repeat, as `pipeline_flink`.
    """
    sim = common.simulation(args.patients, args.minutes * 60, 60, args.seed)
    readings = len(sim.columns["sequence"])
    payloads = list(sim.payloads())
    readings_path = work / "readings.npz"
    _write_readings(sim, readings_path)
    bundle = registry.load_current(root)
    names = ("pipeline", "pipeline_flink", "floor", "beam_ad")
    times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    flink_counters = []
    for repeat in range(args.repeats):
        common.progress(f"compare: repeat {repeat + 1}/{args.repeats}")
        seconds, cpu_seconds, _ = common.timed_cpu(
            lambda: floor.run(payloads, bundle, args.max_score_batch)
        )
        times["floor"].append(seconds)
        cpu_times["floor"].append(cpu_seconds)
        seconds, cpu_seconds, counters, batches = _run_measured(
            payloads, root, args.max_score_batch, work / f"run{repeat}"
        )
        times["pipeline"].append(seconds)
        cpu_times["pipeline"].append(cpu_seconds)
        if flink_args:
            seconds, cpu_seconds, run_counters, _ = _run_measured(
                payloads,
                root,
                args.max_score_batch,
                work / f"flink{repeat}",
                flink_args + [f"--job_name=throughput-{repeat}"],
            )
            flink_counters.append(run_counters)
            times["pipeline_flink"].append(seconds)
            cpu_times["pipeline_flink"].append(cpu_seconds)
        if not args.skip_beam_ad:
            ad = _run_beam_ad(readings_path)
            times["beam_ad"].append(ad["seconds"][0])
            cpu_times["beam_ad"].append(ad["cpu_seconds"][0])
    results = {
        name: common.summarize_runs(seconds, readings, cpu_times[name])
        for name, seconds in times.items()
        if seconds
    }
    results["payloads"] = len(payloads)
    results["score_batch_size"] = batches
    results["counters"] = counters
    if flink_counters:
        # One entry per repeat, with the run's CPU milliseconds split into
        # this process (SDK harness) and each Java process.
        results["flink_counters"] = flink_counters
    return results


def sweep_batch_sizes(args, root, work) -> dict:
    """Pipeline readings/s per VitalBatch size, on a smaller fleet."""
    results = {}
    for batch_size in _BATCH_SIZES:
        sim = common.simulation(
            args.sweep_patients, args.minutes * 60, batch_size, args.seed
        )
        payloads = list(sim.payloads())
        seconds, cpu_seconds = [], []
        for repeat in range(args.sweep_repeats):
            common.progress(
                f"batch size {batch_size}: repeat {repeat + 1}/"
                f"{args.sweep_repeats}"
            )
            elapsed, cpu, _, _ = _run_measured(
                payloads, root, args.max_score_batch, work / "sweep"
            )
            seconds.append(elapsed)
            cpu_seconds.append(cpu)
        results[str(batch_size)] = common.summarize_runs(
            seconds, len(sim.columns["sequence"]), cpu_seconds
        )
    return results


def sweep_score_batches(args, root, work) -> dict:
    """Pipeline readings/s and received batch sizes per --max_score_batch."""
    sim = common.simulation(
        args.sweep_patients, args.minutes * 60, 60, args.seed
    )
    payloads = list(sim.payloads())
    results = {}
    for max_batch in _SCORE_BATCHES:
        seconds, cpu_seconds = [], []
        for repeat in range(args.sweep_repeats):
            common.progress(
                f"max_score_batch {max_batch}: repeat "
                f"{repeat + 1}/{args.sweep_repeats}"
            )
            elapsed, cpu, _, batches = _run_measured(
                payloads, root, max_batch, work / "sweep"
            )
            seconds.append(elapsed)
            cpu_seconds.append(cpu)
        readings = len(sim.columns["sequence"])
        results[str(max_batch)] = {
            **common.summarize_runs(seconds, readings, cpu_seconds),
            "score_batch_size": batches,
        }
    return results


def _start_flink(args, out, stack) -> list[str] | None:
    """Start the job server and return the Flink pipeline options."""
    if not args.flink_master:
        return None
    if not args.flink_job_server_jar:
        raise SystemExit("--flink_master needs --flink_job_server_jar")
    common.progress("starting the Flink job server")
    server = stack.enter_context(
        flink_cluster.JobServer(
            args.flink_job_server_jar,
            args.flink_master,
            out / "flink-job-server.log",
        )
    )
    # LOOPBACK runs the SDK harness in this process, so the Python side of
    # the Flink run is counted in this process's CPU time.
    return [
        "--runner=FlinkRunner",
        f"--job_endpoint={server.endpoint}",
        "--environment_type=LOOPBACK",
        "--parallelism=1",
        *FLINK_DEFAULTS,
    ]


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.throughput")
    parser.add_argument(
        "--out", default="out/bench", help="Results folder. Default out/bench."
    )
    parser.add_argument(
        "--patients",
        type=int,
        default=100,
        help="Simulated patients of the comparison. Default 100.",
    )
    parser.add_argument(
        "--sweep_patients",
        type=int,
        default=20,
        help="Simulated patients of the sweeps, fewer because one reading "
        "per payload is slow. Default 20.",
    )
    parser.add_argument(
        "--minutes",
        type=int,
        default=10,
        help="Simulated minutes per patient at 1 Hz. Default 10.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Timed runs of the comparison. Default 3.",
    )
    parser.add_argument(
        "--sweep_repeats",
        type=int,
        default=2,
        help="Timed runs of each sweep setting. Default 2.",
    )
    parser.add_argument(
        "--max_score_batch",
        type=int,
        default=4096,
        help="--max_score_batch of the comparison, in rows. Default 4096.",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="Simulator seed. Default 7."
    )
    parser.add_argument(
        "--skip_beam_ad",
        action="store_true",
        help="Leave out Beam's AnomalyDetection. Default: run it.",
    )
    parser.add_argument(
        "--flink_master",
        default="",
        help="host:port of a Flink cluster's REST API, for example "
        "localhost:8081; the pipeline then also runs there in each "
        "repeat of the comparison. Default: FnApiRunner only.",
    )
    parser.add_argument(
        "--flink_job_server_jar",
        default="",
        help="Beam's Flink job server launcher jar, required with "
        "--flink_master (scripts/flink_job_server.sh prints its path).",
    )
    parser.add_argument(
        "--skip_sweeps",
        action="store_true",
        help="Leave out the batch-size sweeps. Default: run them.",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the comparison and the sweeps; write results and plots."""
    args = _parse(argv)
    out = pathlib.Path(args.out)
    results = {"machine": common.machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="vitalwatch-bench-") as folder:
        work = pathlib.Path(folder)
        common.progress("training and promoting the model")
        root = common.train_registry(work, args.seed)
        with contextlib.ExitStack() as stack:
            flink_args = _start_flink(args, out, stack)
            results["compare"] = compare(args, root, work, flink_args)
        common.write_json(out / "throughput.json", results)
        if not args.skip_sweeps:
            results["batch_sizes"] = sweep_batch_sizes(args, root, work)
            common.write_json(out / "throughput.json", results)
            results["score_batches"] = sweep_score_batches(args, root, work)
    common.write_json(out / "throughput.json", results)
    common.progress(f"wrote {out / 'throughput.json'}")
    print(json.dumps(results["compare"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
