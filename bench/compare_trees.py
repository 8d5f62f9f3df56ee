"""Floor and pipeline CPU time of two source trees, runs alternated.

Measures a code change: each run starts a fresh process in one tree (the
tree's folder first on sys.path), simulates the same patients, and times
`bench.floor.run` and the pipeline on the FnApiRunner in wall and CPU
seconds. Runs of the two trees alternate, so both see the same load.
Export the older commit to a folder first:

    git archive acafba7 | tar -x -C /tmp/before
    .venv/bin/python -m bench.compare_trees /tmp/before . --out out/bench

Both trees must run with this Python and read the same model, which this
script trains once with the current tree's `bench.common`.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

from bench import common

# Runs inside each tree: prints one JSON line of wall and CPU seconds.
_ONE_RUN = """
import json, sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from bench import common, floor
from models import registry
from pipelines.vitals_pipeline import build_pipeline

root, patients, batch, out = sys.argv[1], *map(int, sys.argv[2:4]), sys.argv[4]
sim = common.simulation(patients, 600, batch, 7)
payloads = list(sim.payloads())
bundle = registry.load_current(root)
wall, cpu = time.perf_counter(), time.process_time()
floor.run(payloads, bundle)
floor_wall = time.perf_counter() - wall
floor_cpu = time.process_time() - cpu
options = PipelineOptions([f"--model_registry={root}", f"--output_dir={out}"])
pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
build_pipeline(pipeline, options, payloads=pipeline | beam.Create(payloads))
wall, cpu = time.perf_counter(), time.process_time()
pipeline.run().wait_until_finish()
print(json.dumps({
    "readings": len(sim.columns["sequence"]),
    "floor_wall": floor_wall, "floor_cpu": floor_cpu,
    "pipeline_wall": time.perf_counter() - wall,
    "pipeline_cpu": time.process_time() - cpu,
}))
"""


def _run_tree(tree: pathlib.Path, root: str, args, out: str) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _ONE_RUN,
            root,
            str(args.patients),
            str(args.batch_size),
            out,
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    readings = runs[0]["readings"]
    return {
        step: common.summarize_runs(
            [r[f"{step}_wall"] for r in runs],
            readings,
            [r[f"{step}_cpu"] for r in runs],
        )
        for step in ("floor", "pipeline")
    }


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.compare_trees")
    parser.add_argument("before", help="Folder of the older source tree.")
    parser.add_argument("after", help="Folder of the newer source tree.")
    parser.add_argument(
        "--patients",
        type=int,
        default=100,
        help="Simulated patients, 10 min each at 1 Hz. Default 100.",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=60,
        help="Readings per VitalBatch payload. Default 60.",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs per tree. Default 3."
    )
    parser.add_argument(
        "--out", default="out/bench", help="Results folder. Default out/bench."
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Alternate runs of both trees; write compare_trees.json."""
    args = _parse(argv)
    trees = {
        "before": pathlib.Path(args.before).resolve(),
        "after": pathlib.Path(args.after).resolve(),
    }
    runs = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="vitalwatch-trees-") as folder:
        work = pathlib.Path(folder)
        common.progress("training and promoting the model")
        root = common.train_registry(work, 7)
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                common.progress(f"{name}: run {repeat + 1}/{args.repeats}")
                runs[name].append(_run_tree(tree, root, args, str(work)))
    results = {
        "machine": common.machine(),
        "args": vars(args),
        **{name: _summary(tree_runs) for name, tree_runs in runs.items()},
    }
    out = pathlib.Path(args.out) / "compare_trees.json"
    common.write_json(out, results)
    common.progress(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
