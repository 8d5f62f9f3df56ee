"""Shared builders for readings, payloads and test pipelines."""

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from schemas import encode_batch

# 2026-01-01T00:00:00Z, the event-time origin of every test stream.
T0_MS = 1_767_225_600_000


def batch_record(
    patient: str,
    minute: int,
    heart_rate=70.0,
    spo2=97.0,
    quality=0.9,
    readings: int = 60,
    first_sequence: int | None = None,
) -> dict:
    """One minute of 1 Hz readings for `patient`, starting at `minute`."""
    hr = np.broadcast_to(np.asarray(heart_rate, dtype=float), (readings,))
    return {
        "patient_id": patient,
        "device_id": f"dev-{patient}",
        "first_sequence": minute * 60
        if first_sequence is None
        else first_sequence,
        "start_time": T0_MS + minute * 60_000,
        "interval_ms": 1000,
        "heart_rate_bpm": hr.tolist(),
        "spo2_pct": [float(spo2)] * readings,
        "rr_interval_ms": (60_000.0 / hr).tolist(),
        "signal_quality": [float(quality)] * readings,
    }


def alert_record(patient: str = "p", alert_id: str = "a") -> dict:
    """A SEVERE tachycardia Alert record at `T0_MS`."""
    return {
        "alert_id": alert_id,
        "patient_id": patient,
        "tier": "SEVERE",
        "kind": "tachycardia",
        "event_time": T0_MS,
        "window_start": T0_MS,
        "anomaly_score": None,
        "model_version": "",
        "reasons": [],
        "suppressed_repeats": 0,
    }


def batch_payload(*args, **kwargs) -> bytes:
    """Encode `batch_record(...)` as a single-object payload."""
    return encode_batch(batch_record(*args, **kwargs))


def batch_pipeline(*flags: str) -> beam.Pipeline:
    """A bounded pipeline on the FnApiRunner, never Prism."""
    return beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(flags))


def streaming_pipeline(*flags: str) -> beam.Pipeline:
    """A streaming pipeline for TestStream on the BundleBasedDirectRunner."""
    options = PipelineOptions(["--streaming", *flags])
    return beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
