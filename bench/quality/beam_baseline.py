"""Beam's AnomalyDetection as a baseline, run in the benchmark venv.

``beam_anomaly.py`` needs ``apache_beam.ml.anomaly``, which apache-beam
2.62.0 lacks and 2.77.0 has, so it runs under ``.cache/bench-venv`` when
that exists. This module writes its input from the readings that the
static monitor also scores, and turns its output into ``Alarm`` records.
"""

import json
import pathlib
import subprocess

import numpy as np

from bench.quality import metrics

_SCRIPT = pathlib.Path(__file__).with_name("beam_anomaly.py")
_KINDS = {"heart_rate_bpm": "heart_rate_anomaly", "spo2_pct": "spo2_anomaly"}
_TIER = "BEAM"


def run(python: pathlib.Path, series: dict, scratch: pathlib.Path):
    """Run the detector; return patient id to sorted alarms.

    Args:
        python: Interpreter of the venv with the newer Beam.
        series: Patient id to (times ms, heart rate, SpO2) arrays.
        scratch: Folder for the input and output JSON.

    Raises:
        subprocess.CalledProcessError: When the script fails.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / "beam_anomaly_in.json"
    target = scratch / "beam_anomaly_out.json"
    source.write_text(json.dumps(_to_json(series)))
    subprocess.run(
        [str(python), str(_SCRIPT), str(source), str(target)],
        check=True,
        capture_output=True,
    )
    found = json.loads(target.read_text())
    alarms = {patient: [] for patient in series}
    for channel, by_patient in found.items():
        for patient, onsets in by_patient.items():
            alarms[patient] += [
                metrics.Alarm(int(t), _KINDS[channel], _TIER) for t in onsets
            ]
    for patient_alarms in alarms.values():
        patient_alarms.sort(key=lambda a: a.time_ms)
    return alarms


def _to_json(series: dict) -> dict:
    return {
        patient: {
            "time_ms": np.asarray(times, dtype=np.int64).tolist(),
            "heart_rate_bpm": _optional(heart_rate),
            "spo2_pct": _optional(spo2),
        }
        for patient, (times, heart_rate, spo2) in series.items()
    }


def _optional(values) -> list:
    values = np.asarray(values, dtype=np.float64)
    return [None if v != v else v for v in values.tolist()]
