"""Plot benchmark results as PNG files for docs/benchmarks.md.

Reads throughput.json, memory.json and latency.json from the results
folder, skipping any that is missing, and writes one PNG per chart.

    .venv/bin/python -m bench.plots --results out/bench --images docs/img
"""

import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_TARGET_PER_S = 100_000


def _load(folder: pathlib.Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _save(figure, path: pathlib.Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def plot_compare(results: dict, images: pathlib.Path) -> None:
    """Bar chart of readings/s: pipeline per runner, floor and Beam's AD."""
    compare = results["compare"]
    colours = {
        "floor": "#888",
        "pipeline": "#1f77b4",
        "pipeline_flink": "#2ca02c",
        "beam_ad": "#d62728",
    }
    names = [name for name in colours if compare.get(name)]
    rates = [compare[name]["best_per_s"] for name in names]
    figure, axes = plt.subplots(figsize=(6.5, 3.5))
    axes.bar(names, rates, color=[colours[name] for name in names])
    axes.axhline(_TARGET_PER_S, color="k", linestyle="--", label="target")
    axes.set_yscale("log")
    axes.set_ylabel("readings/s (best of runs, log)")
    axes.set_title("Throughput, VitalBatch of 60 readings")
    axes.legend()
    _save(figure, images / "throughput_compare.png")


def plot_sweep(sweep: dict, xlabel: str, title: str, path: pathlib.Path):
    """Line chart of readings/s over one swept setting."""
    # JSON keys are strings and sort as text ("300" before "60").
    sizes = sorted(int(size) for size in sweep)
    runs = [sweep[str(size)] for size in sizes]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(sizes, [r["best_per_s"] for r in runs], marker="o", label="wall")
    if all("best_per_cpu_s" in r for r in runs):
        axes.plot(
            sizes,
            [r["best_per_cpu_s"] for r in runs],
            marker="s",
            label="CPU",
        )
        axes.legend()
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("readings per wall or CPU second")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    _save(figure, path)


def plot_memory(results: dict, images: pathlib.Path) -> None:
    """RSS growth per patient and encoded state per patient."""
    # A fleet whose RSS fell while it ran has no valid growth to plot.
    fleets = [f for f in results["fleets"] if f["per_patient_bytes"] > 0]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(
        [f["patients"] for f in fleets],
        [f["per_patient_bytes"] / 1024 for f in fleets],
        marker="o",
        label="RSS growth per patient",
    )
    state = [s for s in results["state"] if s["rate_hz"] == 1.0]
    axes.axhline(
        state[-1]["total_median"] / 1024,
        color="g",
        label="encoded keyed state per patient",
    )
    axes.axhline(10, color="k", linestyle="--", label="target 10 KiB")
    axes.set_xscale("log")
    axes.set_xlabel("patients")
    axes.set_ylabel("KiB per patient")
    axes.legend()
    _save(figure, images / "memory_per_patient.png")


def plot_latency(results: dict, images: pathlib.Path) -> None:
    """p50/p95/p99 event time to alert latency per rate."""
    runs = [r for r in results["runs"] if r["tachycardia"]["count"]]
    if not runs:
        return
    devices = [r["devices"] for r in runs]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        axes.plot(
            devices,
            [r["tachycardia"][key] for r in runs],
            marker="o",
            label=key[:3],
        )
    axes.axhline(200, color="k", linestyle="--", label="target p99")
    axes.set_yscale("log")
    axes.set_xlabel("devices at 1 reading/s")
    axes.set_ylabel("event time to alert, ms")
    axes.set_title("BundleBasedDirectRunner from Kafka")
    axes.legend()
    _save(figure, images / "latency.png")


def main(argv=None) -> int:
    """Write every chart whose results exist."""
    parser = argparse.ArgumentParser(prog="python -m bench.plots")
    parser.add_argument(
        "--results", default="out/bench", help="Default out/bench."
    )
    parser.add_argument(
        "--images", default="docs/img", help="Default docs/img."
    )
    args = parser.parse_args(argv)
    folder, images = pathlib.Path(args.results), pathlib.Path(args.images)
    images.mkdir(parents=True, exist_ok=True)
    throughput = _load(folder, "throughput.json")
    if throughput:
        plot_compare(throughput, images)
        if "batch_sizes" in throughput:
            plot_sweep(
                throughput["batch_sizes"],
                "readings per VitalBatch",
                "Throughput by payload batch size",
                images / "throughput_batch_size.png",
            )
            plot_sweep(
                throughput["score_batches"],
                "--max_score_batch (rows)",
                "Throughput by scoring batch limit",
                images / "throughput_score_batch.png",
            )
    memory = _load(folder, "memory.json")
    if memory:
        plot_memory(memory, images)
    latency = _load(folder, "latency.json")
    if latency:
        plot_latency(latency, images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
