"""CPU cost per message of parsing and patient state with small blocks.

Streaming sources deliver one reading per Kafka message, and blocks of up
to `transforms.readings.SMALL_BLOCK_READINGS` readings take a per-reading
Python path in the hot steps. This benchmark times that path against the
NumPy block path on the same simulated messages:

* parse: `_ParseVitalsDoFn.process` (Avro decoding and validation);
* track: `_TrackPatientDoFn.process` on the valid blocks, called directly
  with dict-backed state and no timers, as `bench/floor.py` does.

Each run is a fresh process that simulates the patients (VitalReading
payloads by default, one reading each) and reports the CPU seconds of
both steps. Variants alternate within every repeat, so they share the
machine's load: the block path (the limit set to 0) and the small-block
path of this tree, and optionally an older source tree as it is:

    git archive 92e91e6 | tar -x -C /tmp/before
    .venv/bin/python -m bench.small_blocks --before /tmp/before

The script also checks that both paths of this tree give identical
outputs (dead letters, events and summaries) before timing them.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

from bench import common
from transforms import readings

_REPO = pathlib.Path(__file__).resolve().parents[1]

# Runs inside a tree: prints one JSON line of CPU seconds per step. A limit
# of -1 keeps the tree's own, and trees without the small-block path
# ignore it.
_ONE_RUN = """
import json, sys, time
from apache_beam.pvalue import TaggedOutput
from bench import common, floor
from transforms import readings
from transforms.parse import _ParseVitalsDoFn
from transforms.patient_state import TrackingConfig

patients, seconds, batch, limit = map(int, sys.argv[1:5])
if limit >= 0 and hasattr(readings, "SMALL_BLOCK_READINGS"):
    readings.SMALL_BLOCK_READINGS = limit
sim = common.simulation(patients, seconds, batch or None, 7)
payloads = [("bench", payload) for payload in sim.payloads()]
parse = _ParseVitalsDoFn(None, 300_000, time.time)
parse.setup()
cpu = time.process_time()
parsed = [output for p in payloads for output in parse.process(p)]
parse_cpu = time.process_time() - cpu
blocks = [b for b in parsed if not isinstance(b, TaggedOutput)]
tracker = floor.PatientTracker(TrackingConfig(event_timers=False))
cpu = time.process_time()
outputs = [output for b in blocks for output in tracker.process(b)]
track_cpu = time.process_time() - cpu
print(json.dumps({
    "messages": len(payloads), "blocks": len(blocks),
    "outputs": len(outputs), "parse_cpu": parse_cpu, "track_cpu": track_cpu,
}))
"""

# Runs in this tree: prints a digest of every output of both steps.
_DIGEST = """
import hashlib, pickle, sys
from apache_beam.pvalue import TaggedOutput
from bench import common, floor
from transforms import readings
from transforms.parse import _ParseVitalsDoFn
from transforms.patient_state import TrackingConfig

patients, seconds, batch, limit = map(int, sys.argv[1:5])
readings.SMALL_BLOCK_READINGS = limit
sim = common.simulation(patients, seconds, batch or None, 7)
parse = _ParseVitalsDoFn(None, 300_000, lambda: 2e9)
parse.setup()
tracker = floor.PatientTracker(TrackingConfig(event_timers=False))
digest = hashlib.sha256()
for payload in sim.payloads():
    for block in parse.process(("bench", payload)):
        if isinstance(block, TaggedOutput):
            digest.update(pickle.dumps(block.value))
            continue
        for output in tracker.process(block):
            value = output.value if isinstance(output, TaggedOutput) else output
            if hasattr(value, "timestamp"):
                digest.update(pickle.dumps(value.timestamp.micros))
                value = value.value
            digest.update(pickle.dumps(value))
print(digest.hexdigest())
"""


def _run(code: str, tree: pathlib.Path, args, limit: int) -> str:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(args.patients),
            str(args.minutes * 60),
            str(args.batch_size),
            str(limit),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip().splitlines()[-1]


def _check_identical(args) -> bool:
    """Compare output digests of the block path and the small-block path."""
    block_path = _run(_DIGEST, _REPO, args, 0)
    small_path = _run(_DIGEST, _REPO, args, args.limit)
    return block_path == small_path


def _per_thousand(runs: list[dict], step: str) -> dict:
    """Compute CPU seconds per 1,000 messages, best and median, of a step."""
    per_message = []
    for run in runs:
        if step == "total":
            cpu = run["parse_cpu"] + run["track_cpu"]
        else:
            cpu = run[f"{step}_cpu"]
        per_message.append(cpu / run["messages"] * 1000)
    return {
        "cpu_s_per_1000_messages": [round(v, 3) for v in per_message],
        "best": round(min(per_message), 3),
        "median": round(statistics.median(per_message), 3),
    }


def _summary(runs: dict[str, list[dict]]) -> dict:
    steps = ("parse", "track", "total")
    results = {
        name: {step: _per_thousand(variant, step) for step in steps}
        for name, variant in runs.items()
    }
    for name in runs:
        if name == "small_path":
            continue
        results[f"ratio_{name}_to_small_path"] = {
            step: {
                stat: round(
                    results[name][step][stat]
                    / results["small_path"][step][stat],
                    2,
                )
                for stat in ("best", "median")
            }
            for step in steps
        }
    return results


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.small_blocks")
    parser.add_argument(
        "--patients",
        type=int,
        default=20,
        help="Simulated patients, one device each. Default 20.",
    )
    parser.add_argument(
        "--minutes",
        type=int,
        default=10,
        help="Simulated minutes per patient at 1 Hz. Default 10.",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=0,
        help="Readings per VitalBatch message, or 0 for one VitalReading "
        "per message as streaming sources send. Default 0.",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=-1,
        help="SMALL_BLOCK_READINGS of the small-block runs, in readings, "
        "or -1 for the tree's value. Limits above 7 time the path but do "
        "not give bit-identical sums. Default -1.",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs per variant. Default 3."
    )
    parser.add_argument(
        "--before",
        help="Folder of an older source tree to time as well, for example "
        "a 'git archive' export. Default: none.",
    )
    parser.add_argument(
        "--out", default="out/bench", help="Results folder. Default out/bench."
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Time the variants alternately and write small_blocks.json."""
    args = _parse(argv)
    if args.limit < 0:
        args.limit = readings.SMALL_BLOCK_READINGS

    common.progress("comparing outputs of the block and small-block paths")
    identical = _check_identical(args)
    if not identical:
        common.progress("outputs differ between the two paths")

    variants = {}
    if args.before:
        variants["before"] = (pathlib.Path(args.before).resolve(), -1)
    variants["block_path"] = (_REPO, 0)
    variants["small_path"] = (_REPO, args.limit)

    runs = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, (tree, limit) in variants.items():
            common.progress(f"{name}: run {repeat + 1}/{args.repeats}")
            runs[name].append(json.loads(_run(_ONE_RUN, tree, args, limit)))

    results = {
        "machine": common.machine(),
        "args": vars(args),
        "outputs_identical": identical,
        "messages": runs["small_path"][0]["messages"],
        **_summary(runs),
    }
    out = pathlib.Path(args.out) / "small_blocks.json"
    common.write_json(out, results)
    common.progress(f"wrote {out}")
    _print_table(results, list(variants))
    return 0 if identical else 1


def _print_table(results: dict, names: list[str]) -> None:
    """Print CPU seconds per 1,000 messages and the ratios as a table."""
    print(f"outputs identical: {results['outputs_identical']}")
    print("variant       step    best    median   (CPU s per 1,000 messages)")
    for name in names:
        for step, cost in results[name].items():
            best, median = cost["best"], cost["median"]
            print(f"{name:<13} {step:<6} {best:7.3f} {median:8.3f}")
    for name in names[:-1]:
        ratios = results[f"ratio_{name}_to_small_path"]
        for step, ratio in ratios.items():
            print(
                f"{name} / small_path, {step}: {ratio['best']:.2f}x best, "
                f"{ratio['median']:.2f}x median"
            )


if __name__ == "__main__":
    sys.exit(main())
