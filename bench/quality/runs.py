"""Inputs and pipeline runs of the detection-quality evaluation.

The inputs are those of ``make demo``: every labelled recording replayed
by ``devices.edge_replay``, simulated patients from ``devices.simulator``
and an Isolation Forest trained on simulated history with ``models``.
One more input is added: the CinC 2015 recordings replayed with the
pulse rate taken from the arterial blood pressure (ABP) channel where a
record has one, under the data-set tag ``cinc2015abp``. The edge replay
has no ABP path, so the override lives here.

The pipeline runs once over all inputs on the FnApiRunner, with its own
``build_pipeline`` and options.
"""

import dataclasses
import json
import logging
import pathlib
import time

import apache_beam as beam
import numpy as np
import wfdb
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from devices import edge_replay, labels, simulator
from pipelines import summary
from pipelines.vitals_pipeline import build_pipeline

_LOGGER = logging.getLogger(__name__)

ABP_TAG = "cinc2015abp"
_ABP_CHANNEL = "ABP"
_HOUR_MS = 3_600_000


def replay_recordings(data_dir, progress) -> dict[str, object]:
    """Replay every recording, plus the ABP variant of the CinC records.

    Returns:
        Patient id to ``ReplayResult``.
    """
    recordings = labels.list_recordings(data_dir)
    replays = {}
    for number, recording in enumerate(recordings, 1):
        result = edge_replay.replay_record(recording)
        replays[result.patient_id] = result
        if recording.dataset == labels.CINC2015:
            variant = with_abp_pulse(result, recording)
            replays[variant.patient_id] = variant
        progress(f"replayed {number}/{len(recordings)} recordings")
    return replays


def with_abp_pulse(result, recording):
    """Return the replay with pulse rate from ABP where the record has it.

    Pulses are found on the ABP waveform with the edge replay's own pulse
    detector (neurokit2 ``ppg_clean`` and ``ppg_peaks``, whose systolic
    peak detection also applies to an arterial pressure wave), and the
    rate uses the replay's 5 s median-RR rule.
    """
    tag = f"{ABP_TAG}-{recording.name}"
    columns = dict(result.columns)
    record = wfdb.rdrecord(str(recording.path))
    if _ABP_CHANNEL in record.sig_name:
        abp = record.p_signal[:, record.sig_name.index(_ABP_CHANNEL)]
        ends = np.arange(1, len(result) + 1, dtype=np.float64)
        # NOTE: these are private helpers of devices.edge_replay, reused so
        # that ABP and PPG pulses are detected and rated the same way.
        pulses = edge_replay._detect_pulses(abp, float(record.fs))
        rate = edge_replay._rate_bpm(pulses, ends, "pulse_rate_bpm", {})
        low, high = edge_replay._VALID_RANGES["pulse_rate_bpm"]
        with np.errstate(invalid="ignore"):
            rate = np.where((rate < low) | (rate > high), np.nan, rate)
        columns["pulse_rate_bpm"] = rate.astype(np.float32)
    return dataclasses.replace(
        result,
        patient_id=f"rec-{tag}",
        device_id=f"edge-{tag}",
        columns=columns,
    )


def has_abp(recording) -> bool:
    """Return whether a WFDB record has an ABP channel."""
    header = wfdb.rdheader(str(recording.path))
    return _ABP_CHANNEL in header.sig_name


def write_inputs(replays, sim, out: pathlib.Path) -> dict[str, str]:
    """Write the replays and the simulation as Avro input files.

    Returns:
        Input name (``"recordings"``, ``"cinc"``, ``"simulation"``,
        ``"all"``) to the file glob of that input.
    """
    folders = {name: out / "input" / name for name in ("recordings", "cinc")}
    folders["simulation"] = out / "input" / "simulation"
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.avro"):
            stale.unlink()
    for patient, result in replays.items():
        paths = edge_replay.write_replay(result, out / "replay")
        is_cinc = patient.startswith(("rec-cinc2015-", f"rec-{ABP_TAG}-"))
        folder = folders["cinc" if is_cinc else "recordings"]
        paths["batches"].rename(folder / paths["batches"].name)
    paths = simulator.write_simulation(sim, out / "simulation")
    paths["records"].rename(folders["simulation"] / "simulated.batches.avro")
    globs = {name: str(folder / "*.avro") for name, folder in folders.items()}
    globs["all"] = str(out / "input" / "*" / "*.avro")
    return globs


def simulate_patients(patients: int, minutes: int, seed: int):
    """Simulate patients with labelled episodes, as the demo does.

    The simulation ends at least an hour before the current time, on a
    whole hour. The pipeline rejects readings stamped more than 5 minutes
    ahead of its clock, and the simulator's invalid "future" readings
    are one day ahead of their device's time. With the demo's fixed start
    in the past they would pass that check, end the device's silence
    tracking and hide later sensor-off episodes.
    """
    duration_ms = minutes * 60_000
    end_ms = (time.time_ns() // 1_000_000 // _HOUR_MS - 1) * _HOUR_MS
    config = simulator.SimulationConfig(
        n_patients=patients,
        duration_s=minutes * 60,
        seed=seed,
        batch_size=60,
        start_epoch_ms=end_ms - duration_ms - duration_ms % _HOUR_MS,
    )
    return simulator.simulate(config)


def run_pipeline(source_glob, run_dir, registry_root: str, extra_args=()):
    """Run the pipeline over Avro inputs; return its alerts and counters.

    Args:
        source_glob: File glob of the Avro inputs.
        run_dir: Folder for the alerts and dead letters.
        registry_root: Model registry with a promoted version.
        extra_args: More pipeline options, for example
            ``["--suppression_sec=60"]``.
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(
        [
            f"--source=avro:{source_glob}",
            f"--output_dir={run_dir}",
            f"--model_registry={registry_root}",
            *extra_args,
        ]
    )
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    alerts_path = run_dir / "alerts.jsonl"
    alerts = []
    if alerts_path.exists():
        with open(alerts_path) as lines:
            alerts = [json.loads(line) for line in lines if line.strip()]
    return alerts, summary.counters(result)
