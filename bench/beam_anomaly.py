"""Beam's own AnomalyDetection with a PyOD Isolation Forest, for comparison.

`apache_beam.ml.anomaly` is missing from apache-beam 2.62.0, the version
the project pins, so `bench/throughput.py` runs this script as a
subprocess in a separate virtualenv (`.cache/bench-venv`, apache-beam
2.77.0 with pyod). It imports nothing from the project.

The input is an .npz file with `patients` (int, one per reading) and
`values` (float64, readings x channels) of the same simulated readings the
vitalwatch pipeline reads. A PyOD IForest (200 trees of 256 samples,
contamination 0.02, the project's own settings) is fitted on a sample of
them and pickled, then `AnomalyDetection(PyODFactory.create_detector(...))`
scores every reading, keyed by patient, on the FnApiRunner. Missing
channels are imputed with the column median, because PyOD rejects NaN.

    .cache/bench-venv/bin/python bench/beam_anomaly.py readings.npz \\
        --repeats 3

It prints one JSON object: readings, wall and CPU seconds of each run,
and the number of AnomalyResults of the last run, which must equal the
readings.
"""

import argparse
import json
import pickle
import sys
import tempfile
import time

import apache_beam as beam
import numpy as np
from apache_beam.ml.anomaly.detectors.pyod_adapter import PyODFactory
from apache_beam.ml.anomaly.transforms import AnomalyDetection
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from pyod.models.iforest import IForest

_TRAINING_SAMPLE = 20_000
_CHANNELS = ("hr", "spo2", "rr", "quality", "pulse", "rmssd")


def _load(path: str) -> tuple[list[str], np.ndarray]:
    data = np.load(path)
    values = np.array(data["values"], dtype=np.float64)
    medians = np.nan_to_num(np.nanmedian(values, axis=0))
    missing = np.isnan(values)
    values[missing] = np.broadcast_to(medians, values.shape)[missing]
    keys = [f"p{index}" for index in data["patients"].tolist()]
    return keys, values


def _fit_model(values: np.ndarray, folder: str) -> str:
    rng = np.random.default_rng(0)
    take = min(_TRAINING_SAMPLE, len(values))
    sample = values[rng.choice(len(values), take, replace=False)]
    model = IForest(
        n_estimators=200, max_samples=256, contamination=0.02, random_state=0
    ).fit(sample)
    path = f"{folder}/iforest.pkl"
    with open(path, "wb") as file:
        pickle.dump(model, file)
    return path


def _run_once(model_path: str, elements: list) -> tuple[float, float, int]:
    detector = PyODFactory.create_detector(model_path, features=list(_CHANNELS))
    pipeline = beam.Pipeline(runner=FnApiRunner())
    scored = (
        pipeline
        | "CreateReadings" >> beam.Create(elements)
        | "DetectAnomalies" >> AnomalyDetection(detector)
        | "CountResults" >> beam.combiners.Count.Globally()
    )
    found = []
    scored | "CollectCount" >> beam.Map(found.append)
    started, started_cpu = time.perf_counter(), time.process_time()
    pipeline.run().wait_until_finish()
    seconds = time.perf_counter() - started
    return seconds, time.process_time() - started_cpu, (found or [0])[0]


def main(argv=None) -> int:
    """Fit the detector, time the pipeline and print the results as JSON."""
    parser = argparse.ArgumentParser(prog="bench/beam_anomaly.py")
    parser.add_argument("readings", help="The .npz file of readings.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed runs. Default 3."
    )
    args = parser.parse_args(argv)
    keys, values = _load(args.readings)
    elements = [
        (key, beam.Row(**dict(zip(_CHANNELS, row, strict=True))))
        for key, row in zip(keys, values.tolist(), strict=True)
    ]
    with tempfile.TemporaryDirectory() as folder:
        model_path = _fit_model(values, folder)
        runs = [_run_once(model_path, elements) for _ in range(args.repeats)]
    json.dump(
        {
            "apache_beam": beam.__version__,
            "readings": len(elements),
            "seconds": [round(seconds, 3) for seconds, _, _ in runs],
            "cpu_seconds": [round(cpu, 3) for _, cpu, _ in runs],
            "results": runs[-1][2],
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
