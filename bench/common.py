"""Shared helpers of the benchmarks: inputs, the model, timing, the machine.

Every benchmark simulates its input with `devices.simulator`, so that runs
are reproducible from a seed, and trains its model as `make demo` does,
on a shorter simulated history.
"""

import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable

import apache_beam
import numpy as np

from devices import simulator
from pipelines import demo

# 60 patients x 30 min of history give ~1,500 training windows, enough for
# 200 trees of 256 samples, and train in a few seconds.
_HISTORY_PATIENTS = 60
_HISTORY_SECONDS = 1800


def machine() -> dict:
    """Describe the machine a benchmark ran on: cores, CPU model, RAM."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": round(ram_kib / 2**20, 1),
        "python": platform.python_version(),
        "apache_beam": apache_beam.__version__,
        "numpy": np.__version__,
    }


def simulation(
    patients: int, seconds: int, batch_size: int | None, seed: int = 7
) -> simulator.Simulation:
    """Simulate `patients` devices at 1 Hz with the default fault rates.

    Args:
        patients: Number of patients, one device each.
        seconds: Simulated seconds per patient.
        batch_size: Readings per VitalBatch payload, or None for one
            VitalReading per payload.
        seed: Simulator seed.
    """
    config = simulator.SimulationConfig(
        n_patients=patients,
        duration_s=seconds,
        seed=seed,
        batch_size=batch_size,
    )
    return simulator.simulate(config)


def train_registry(workdir: pathlib.Path, seed: int = 7) -> str:
    """Train and promote the demo's model on a shorter history.

    Returns:
        The registry root that contains the promoted version.
    """
    return demo.train_demo_model(
        workdir, seed, _HISTORY_PATIENTS, _HISTORY_SECONDS
    )


def timed(function: Callable[[], object]) -> tuple[float, object]:
    """Run `function` once and return (wall seconds, its result)."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def timed_cpu(function: Callable[[], object]) -> tuple[float, float, object]:
    """Run `function` once; return (wall seconds, CPU seconds, its result).

    CPU seconds are this process's, all threads included. On a shared
    machine they vary less with other jobs' load than wall seconds do.
    """
    started, started_cpu = time.perf_counter(), time.process_time()
    result = function()
    cpu = time.process_time() - started_cpu
    return time.perf_counter() - started, cpu, result


def summarize_runs(
    seconds: list[float], readings: int, cpu_seconds: list[float] = ()
) -> dict:
    """Readings per second of repeated runs: best, median and every run.

    With `cpu_seconds`, also readings per CPU second, best and median.
    """
    best = min(seconds)
    summary = {
        "readings": readings,
        "seconds": [round(s, 3) for s in seconds],
        "best_per_s": round(readings / best),
        "median_per_s": round(readings / statistics.median(seconds)),
    }
    if cpu_seconds:
        summary["cpu_seconds"] = [round(s, 3) for s in cpu_seconds]
        summary["best_per_cpu_s"] = round(readings / min(cpu_seconds))
        summary["median_per_cpu_s"] = round(
            readings / statistics.median(cpu_seconds)
        )
    return summary


def write_json(path: pathlib.Path, data: dict) -> None:
    """Write benchmark results as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def progress(message: str) -> None:
    """Show progress on stderr; the CLI's only output besides the results."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)
