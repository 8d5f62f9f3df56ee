"""The vitalwatch pipeline: vitals in, tiered alerts and dead letters out.

Stages, each a PTransform in `transforms/`:

    source -> ParseVitals -> TrackPatients -> ComputeTrendFeatures
           -> ScoreWindows (model side input) -> RaiseAlerts -> sinks

Fast-path events from TrackPatients join the model's events before
RaiseAlerts. Dead letters from parsing and late readings from the
stateful stage go to one dead-letter output. MonitorDrift compares the
feature rows with the scoring model's training data, and its drift events
go to their own sink.

Launch through the runner CLI, the same graph on every runner::

    # Local, bounded input:
    python -m runners run --runner DirectRunner \\
        --source avro:out/replay/*.avro --output_dir out/run
    # Local Flink session cluster, streaming from Kafka to Kafka:
    python -m runners run --runner FlinkRunner --flink_master localhost:8081 \\
        --flink_job_server_jar "$(scripts/flink_job_server.sh)" \\
        --environment_type LOOPBACK --checkpointing_interval 10000 \\
        --streaming --source kafka:vitals --kafka_bootstrap 127.0.0.1:19092 \\
        --alerts_topic alerts --dead_letter_topic dead-letters
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
from schemas import ALERT, DEAD_LETTER, encode_record
from transforms.alerts import RaiseAlerts
from transforms.drift import ComputeDriftPerWindow, MonitorDrift
from transforms.kafka_io import WriteAlertsToKafka, WriteToKafkaTopic
from transforms.keyed_scoring import ScoreWindowsWithModelStream
from transforms.parse import ParseVitals
from transforms.patient_state import TrackingConfig, TrackPatients
from transforms.scoring import ScoreWindows
from transforms.sinks import WriteDriftEvents, WriteRecords
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


def _score_rows(vitals, streaming, rows, pipeline, model, model_updates):
    """Score feature rows with the promoted model, if there is one.

    Bounded runs read the model once and pass it as a side input.
    Streaming runs receive promoted models as a stream kept in keyed state
    (`transforms/keyed_scoring.py` explains why a side input does not work
    there on Beam 2.62.0). A caller may pass either instead of
    `--model_registry`. Without any, rows are not scored.

    Both paths measure feature drift against the training statistics of
    the model that scores each row. Streaming runs given a `model` side
    input, which only tests pass, measure no drift.

    Returns:
        (model events, drift events), each None when not computed.
    """
    max_batch = vitals.max_score_batch
    if model is None and not vitals.model_registry and model_updates is None:
        return None, None
    if streaming and model is None:
        if model_updates is None:
            model_updates = pipeline | "ReadModel" >> ReadModel(vitals)
        return _score_with_model_stream(vitals, rows, model_updates)
    if model is None:
        model = beam.pvalue.AsSingleton(
            pipeline | "ReadModel" >> ReadModel(vitals)
        )
    events = rows | "ScoreWindows" >> ScoreWindows(
        model, max_batch_size=max_batch
    )
    drift_events = None
    if not streaming:
        drift_events = rows | "MonitorDrift" >> MonitorDrift(
            model,
            vitals.drift_window_sec,
            vitals.drift_psi_threshold,
            vitals.drift_min_rows,
        )
    return events, drift_events


def _score_with_model_stream(vitals, rows, model_updates):
    """Score rows with models kept in keyed state, and measure drift."""
    scored = rows | "ScoreWindows" >> ScoreWindowsWithModelStream(
        model_updates, max_batch_size=vitals.max_score_batch
    )
    drift_events = scored.drift_counts | "MonitorDrift" >> (
        ComputeDriftPerWindow(
            vitals.drift_window_sec,
            vitals.drift_psi_threshold,
            vitals.drift_min_rows,
        )
    )
    return scored.events, drift_events


def build_pipeline(
    pipeline: beam.Pipeline,
    options: PipelineOptions,
    payloads: beam.PCollection | None = None,
    model=None,
    model_updates: beam.PCollection | None = None,
) -> dict:
    """Add the vitals graph to `pipeline`.

    Args:
        pipeline: The pipeline to build on.
        options: Options holding VitalsOptions.
        payloads: Raw payloads to use instead of `--source`; tests pass a
            TestStream or Create here.
        model: Singleton side input of the ModelBundle to use instead of
            `--model_registry`; tests pass one here.
        model_updates: In streaming runs, a PCollection of promoted
            ModelBundles to use instead of polling `--model_registry`.

    Returns:
        The named PCollections: blocks, summaries (patient id, Summary)
        after de-duplication, features, events, alerts and dead_letters.
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

    parsed = payloads | "ParseVitals" >> ParseVitals(
        max_future_skew_ms=vitals.max_future_skew_sec * 1000
    )

    tracked = parsed.blocks | "TrackPatients" >> TrackPatients(
        config, bounded=not streaming
    )

    rows = tracked.summaries | "ComputeTrendFeatures" >> ComputeTrendFeatures(
        config.window_size_ms,
        config.window_period_ms,
        config.allowed_lateness_ms,
        streaming,
    )

    event_sources = [tracked.events]
    model_events, drift_events = _score_rows(
        vitals, streaming, rows, pipeline, model, model_updates
    )
    if model_events is not None:
        event_sources.append(model_events)

    events = tuple(event_sources) | "FlattenEvents" >> beam.Flatten()

    alerts = events | "RaiseAlerts" >> RaiseAlerts(
        vitals.suppression_sec * 1000, bounded=not streaming
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
        if drift_events is not None:
            drift_events | "WriteDriftEvents" >> WriteDriftEvents(
                f"{prefix}/drift_events"
            )
    _publish_to_kafka(vitals, alerts, dead_letters)
    return {
        "blocks": parsed.blocks,
        "summaries": tracked.summaries,
        "features": rows,
        "events": events,
        "alerts": alerts,
        "dead_letters": dead_letters,
        "drift_events": drift_events,
    }


def _dead_letter_message(letter: dict) -> tuple[str, bytes]:
    # The source position (topic/partition@offset for Kafka) is the key,
    # because a payload that failed to decode has no patient id.
    return letter["source"], encode_record(DEAD_LETTER, letter)


def _publish_to_kafka(vitals: VitalsOptions, alerts, dead_letters) -> None:
    """Write alerts and dead letters to the Kafka topics that are set.

    Both are Avro single-object encoded with the current Alert and
    DeadLetter schemas. Alerts are keyed by patient id. Delivery is
    at-least-once, so consumers drop repeats by `alert_id`.
    """
    if not (vitals.alerts_topic or vitals.dead_letter_topic):
        return
    config = vitals.kafka_client_config()
    if vitals.alerts_topic:
        alerts | "PublishAlerts" >> WriteAlertsToKafka(
            vitals.alerts_topic, vitals.kafka_bootstrap, config
        )
    if vitals.dead_letter_topic:
        (
            dead_letters
            | "KeyDeadLetters" >> beam.Map(_dead_letter_message)
            | "PublishDeadLetters"
            >> WriteToKafkaTopic(
                vitals.dead_letter_topic, vitals.kafka_bootstrap, config
            )
        )
