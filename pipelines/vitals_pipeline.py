"""The vitalwatch pipeline: vitals in, tiered alerts and dead letters out.

Stages, each a PTransform in `transforms/`:

    source -> ParseVitals -> TrackPatients -> ComputeTrendFeatures
           -> ScoreWindows (model side input) -> RaiseAlerts -> sinks

Fast-path events from TrackPatients join the model's events before
RaiseAlerts. Dead letters from parsing and late readings from the
stateful stage go to one dead-letter output.

Launch through the runner CLI, the same graph on every runner::

    # Local, bounded input:
    python -m runners run --runner DirectRunner \\
        --source avro:out/replay/*.avro --output_dir out/run
    # Local Flink session cluster, streaming from Kafka:
    python -m runners run --runner FlinkRunner --flink_master localhost:8081 \\
        --streaming --source kafka:vitals --kafka_bootstrap 127.0.0.1:19092
    # Dataflow:
    python -m runners run --runner DataflowRunner --project P --region R \\
        --temp_location gs://B/tmp --setup_file ./setup.py \\
        --source pubsub:projects/P/subscriptions/vitals --streaming
"""

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
)

from pipelines.options import VitalsOptions
from pipelines.sources import ReadModel, ReadPayloads
from schemas import ALERT, DEAD_LETTER
from transforms.alerts import RaiseAlerts
from transforms.parse import ParseVitals
from transforms.patient_state import TrackingConfig, TrackPatients
from transforms.scoring import ScoreWindows
from transforms.sinks import WriteRecords
from transforms.windows import ComputeTrendFeatures

_LOGGER = logging.getLogger(__name__)


def tracking_config(options: VitalsOptions, streaming: bool) -> TrackingConfig:
    """Build the stateful stage's timing from the options."""
    return TrackingConfig(
        window_size_ms=options.window_size_sec * 1000,
        window_period_ms=options.window_period_sec * 1000,
        allowed_lateness_ms=options.allowed_lateness_sec * 1000,
        silence_ms=options.silence_timeout_sec * 1000,
        leave_after_ms=options.patient_leave_after_sec * 1000,
        event_timers=streaming,
    )


def build_pipeline(
    pipeline: beam.Pipeline,
    options: PipelineOptions,
    payloads: beam.PCollection | None = None,
    model=None,
) -> dict:
    """Add the vitals graph to `pipeline`.

    Args:
        pipeline: The pipeline to build on.
        options: Options holding VitalsOptions.
        payloads: Raw payloads to use instead of `--source`; tests pass a
            TestStream or Create here.
        model: Singleton side input of the ModelBundle to use instead of
            `--model_registry`; tests pass one here.

    Returns:
        The named PCollections: blocks, features, events, alerts and
        dead_letters.
    """
    vitals = options.view_as(VitalsOptions)
    streaming = options.view_as(StandardOptions).streaming
    config = tracking_config(vitals, streaming)
    _LOGGER.info(
        "Building vitals pipeline: windows %d s every %d s, lateness %d s, "
        "suppression %d s",
        vitals.window_size_sec,
        vitals.window_period_sec,
        vitals.allowed_lateness_sec,
        vitals.suppression_sec,
    )
    if payloads is None:
        payloads = pipeline | "ReadPayloads" >> ReadPayloads(vitals)
    if model is None:
        model = beam.pvalue.AsSingleton(
            pipeline | "ReadModel" >> ReadModel(vitals)
        )

    parsed = payloads | "ParseVitals" >> ParseVitals(
        max_future_skew_ms=vitals.max_future_skew_sec * 1000
    )

    tracked = parsed.blocks | "TrackPatients" >> TrackPatients(config)

    rows = tracked.summaries | "ComputeTrendFeatures" >> ComputeTrendFeatures(
        config.window_size_ms,
        config.window_period_ms,
        config.allowed_lateness_ms,
        streaming,
    )

    model_events = rows | "ScoreWindows" >> ScoreWindows(
        model, max_batch_size=vitals.max_score_batch
    )

    events = (
        tracked.events,
        model_events,
    ) | "FlattenEvents" >> beam.Flatten()

    alerts = events | "RaiseAlerts" >> RaiseAlerts(
        vitals.suppression_sec * 1000
    )

    dead_letters = (
        parsed.dead_letter,
        tracked.late,
    ) | "FlattenDeadLetters" >> beam.Flatten()

    if vitals.output_dir:
        prefix = vitals.output_dir.rstrip("/")
        alerts | "WriteAlerts" >> WriteRecords(
            f"{prefix}/alerts", ALERT, vitals.output_format
        )
        dead_letters | "WriteDeadLetters" >> WriteRecords(
            f"{prefix}/dead_letters", DEAD_LETTER, vitals.output_format
        )
    return {
        "blocks": parsed.blocks,
        "features": rows,
        "events": events,
        "alerts": alerts,
        "dead_letters": dead_letters,
    }
