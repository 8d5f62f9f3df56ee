"""Tests of the Kafka source and sinks against the broker of scripts/kafka.sh.

Pipelines run on Beam's FnApiRunner, which supports splittable DoFns,
self-checkpointing and bundle finalization without downloading a runner.
"""

import io
import subprocess
import time

import apache_beam as beam
import fastavro
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
)
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from schemas import ALERT, DecodeError, decode_payload, encode_reading
from schemas.codec import load_schema
from transforms import kafka_io
from transforms.kafka_io import (
    ReadVitalsFromKafka,
    WriteAlertsToKafka,
    WriteToKafkaTopic,
)

pytestmark = pytest.mark.kafka

# 2025-01-01T00:00:00Z, a fixed event time well in the past.
_BASE_MS = 1_735_689_600_000
_CONSUME_TIMEOUT_SEC = 30


def _pipeline():
    return beam.Pipeline(runner=FnApiRunner())


def _read(broker, topic, group, **kwargs):
    return ReadVitalsFromKafka(
        topic=topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        bounded=True,
        **kwargs,
    )


class _AttachTimestamp(beam.DoFn):
    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        source, value = element
        yield source, value, timestamp.micros // 1000


def _reading(sequence: int) -> dict:
    return {
        "patient_id": "p-0001",
        "device_id": "dev-7",
        "sequence": sequence,
        "event_time": _BASE_MS + sequence * 1000,
        "heart_rate_bpm": 72.0,
        "spo2_pct": 97.0,
        "signal_quality": 0.9,
    }


def _committed(broker, topic, group, partitions=1):
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group}
    )
    try:
        positions = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], 10
        )
    finally:
        consumer.close()
    return [position.offset for position in positions]


def _consume_all(bootstrap, topic, count, extra_config=None):
    """Read ``count`` messages of a one-partition topic from the start."""
    config = {"bootstrap.servers": bootstrap, "group.id": "test-reader"}
    config.update(extra_config or {})
    consumer = Consumer(config)
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages = []
    deadline = time.monotonic() + _CONSUME_TIMEOUT_SEC
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_bounded_read_returns_produced_messages(
    kafka_broker, new_topic, produce
):
    topic = new_topic(partitions=3)
    messages = [
        (p, b"k", f"p{p}-m{i}".encode(), _BASE_MS + i * 1000)
        for p in range(3)
        for i in range(10)
    ]
    produce(topic, messages)
    expected = [
        (f"kafka:{topic}/{p}@{i}", f"p{p}-m{i}".encode(), _BASE_MS + i * 1000)
        for p in range(3)
        for i in range(10)
    ]

    with _pipeline() as pipeline:
        read = (
            pipeline
            | "Read" >> _read(kafka_broker, topic, "bounded")
            | "AttachTimestamp" >> beam.ParDo(_AttachTimestamp())
        )
        assert_that(read, equal_to(expected))


def test_round_trip_decodes_readings(kafka_broker, new_topic, produce):
    topic = new_topic()
    readings = [_reading(sequence) for sequence in range(5)]
    produce(
        topic,
        [(0, b"p-0001", encode_reading(r), r["event_time"]) for r in readings],
    )
    expected = [("dev-7", r["sequence"], r["heart_rate_bpm"]) for r in readings]

    def summarize(element):
        _, record = decode_payload(element[1])
        return record["device_id"], record["sequence"], record["heart_rate_bpm"]

    with _pipeline() as pipeline:
        decoded = (
            pipeline
            | "Read" >> _read(kafka_broker, topic, "round-trip")
            | "Decode" >> beam.Map(summarize)
        )
        assert_that(decoded, equal_to(expected))


def test_restart_resumes_from_committed_offsets(
    kafka_broker, new_topic, produce
):
    topic = new_topic()
    produce(topic, [(0, b"k", b"first-%d" % i, _BASE_MS) for i in range(10)])

    with _pipeline() as pipeline:
        first = pipeline | "Read" >> _read(kafka_broker, topic, "resume")
        values = first | "Values" >> beam.Map(lambda element: element[1])
        assert_that(values, equal_to([b"first-%d" % i for i in range(10)]))
    assert _committed(kafka_broker, topic, "resume") == [10]

    produce(topic, [(0, b"k", b"second-%d" % i, _BASE_MS) for i in range(5)])
    with _pipeline() as pipeline:
        second = pipeline | "Read" >> _read(kafka_broker, topic, "resume")
        values = second | "Values" >> beam.Map(lambda element: element[1])
        assert_that(values, equal_to([b"second-%d" % i for i in range(5)]))
    assert _committed(kafka_broker, topic, "resume") == [15]


def test_failed_bundle_commits_no_offset(kafka_broker, new_topic, produce):
    topic = new_topic()
    produce(topic, [(0, b"k", b"m-%d" % i, _BASE_MS) for i in range(10)])

    def fail_on_fifth(element):
        if element[0].endswith("@4"):
            raise RuntimeError("simulated worker failure")
        return element

    with pytest.raises(Exception, match="simulated worker failure"):
        with _pipeline() as pipeline:
            _ = (
                pipeline
                | "Read" >> _read(kafka_broker, topic, "crash")
                | "Fail" >> beam.Map(fail_on_fifth)
            )
    assert _committed(kafka_broker, topic, "crash") == [OFFSET_INVALID]

    with _pipeline() as pipeline:
        rerun = pipeline | "Read" >> _read(kafka_broker, topic, "crash")
        values = rerun | "Values" >> beam.Map(lambda element: element[1])
        assert_that(values, equal_to([b"m-%d" % i for i in range(10)]))
    assert _committed(kafka_broker, topic, "crash") == [10]


def _direct_read(broker, topic, partition, max_out_of_orderness_sec):
    """Build the read DoFn and the runner-side objects of one partition."""
    dofn = kafka_io._ReadPartitionDoFn(
        {"bootstrap.servers": broker.bootstrap, "group.id": "direct"},
        max_out_of_orderness_sec,
        commit_offsets=False,
        max_read_sec=kafka_io.DEFAULT_MAX_READ_SEC,
    )
    dofn.setup()
    restriction = OffsetRange(0, kafka_io._UNBOUNDED_STOP)
    threadsafe = ThreadsafeRestrictionTracker(
        kafka_io._CheckpointOnlyTracker(restriction)
    )
    estimator = ManualWatermarkEstimator(None)
    outputs = dofn.process(
        (topic, partition, 0, kafka_io._UNBOUNDED_STOP),
        tracker=RestrictionTrackerView(threadsafe),
        watermark_estimator=estimator,
        bundle_finalizer=None,
    )
    return dofn, threadsafe, estimator, outputs


def test_idle_partition_advances_watermark(kafka_broker, new_topic):
    topic = new_topic(partitions=2)
    before = Timestamp.now()
    dofn, threadsafe, estimator, outputs = _direct_read(
        kafka_broker, topic, partition=1, max_out_of_orderness_sec=5
    )
    try:
        emitted = list(outputs)
    finally:
        dofn.teardown()
    after = Timestamp.now()

    assert emitted == []
    assert estimator.current_watermark() >= before - 5
    assert estimator.current_watermark() <= after - 5
    residual, _ = threadsafe.deferred_status()
    assert residual.start == 0


def test_watermark_follows_event_time_then_idles(
    kafka_broker, new_topic, produce
):
    topic = new_topic()
    produce(topic, [(0, b"k", b"m", _BASE_MS + i * 1000) for i in range(3)])
    dofn, threadsafe, estimator, outputs = _direct_read(
        kafka_broker, topic, partition=0, max_out_of_orderness_sec=5
    )
    try:
        watermarks = []
        for _ in range(3):
            next(outputs)
            watermarks.append(estimator.current_watermark())
        remaining = list(outputs)
    finally:
        dofn.teardown()

    event_times = [
        Timestamp(micros=(_BASE_MS + i * 1000) * 1000) for i in range(3)
    ]
    assert watermarks == [t - 5 for t in event_times]
    assert remaining == []
    assert estimator.current_watermark() > Timestamp.now() - 10
    residual, _ = threadsafe.deferred_status()
    assert residual.start == 3


def _decode_outcome(value: bytes) -> str:
    try:
        decode_payload(value)
    except DecodeError as error:
        return error.reason
    return "decoded"


def test_poison_messages_pass_through(kafka_broker, new_topic, produce):
    topic = new_topic()
    random_bytes = bytes([0x7F, 0x13, 0xFE, 0x00, 0x42])
    truncated = encode_reading(_reading(1))[:12]
    produce(
        topic,
        [
            (0, b"k", random_bytes, _BASE_MS),
            (0, b"k", b"", _BASE_MS),
            (0, b"k", None, _BASE_MS),
            (0, b"k", truncated, _BASE_MS),
            (0, b"k", encode_reading(_reading(2)), _BASE_MS),
        ],
    )

    with _pipeline() as pipeline:
        read = pipeline | "Read" >> _read(kafka_broker, topic, "poison")
        values = read | "Values" >> beam.Map(lambda element: element[1])
        outcomes = values | "Decode" >> beam.Map(_decode_outcome)
        assert_that(
            values,
            equal_to(
                [random_bytes, b"", b"", truncated, encode_reading(_reading(2))]
            ),
            label="CheckValues",
        )
        assert_that(
            outcomes,
            equal_to(
                ["unknown_framing", "empty", "empty", "truncated", "decoded"]
            ),
            label="CheckOutcomes",
        )


def test_tls_read_with_generated_ca(kafka_broker, new_topic, produce):
    topic = new_topic()
    produce(topic, [(0, b"k", b"over-tls", _BASE_MS)])
    tls_config = {
        "security.protocol": "SSL",
        "ssl.ca.location": kafka_broker.ca_file,
    }

    with _pipeline() as pipeline:
        read = pipeline | "Read" >> ReadVitalsFromKafka(
            topic=topic,
            bootstrap_servers=kafka_broker.tls_bootstrap,
            group_id="tls",
            config=tls_config,
            bounded=True,
        )
        values = read | "Values" >> beam.Map(lambda element: element[1])
        assert_that(values, equal_to([b"over-tls"]))


def test_tls_listener_rejects_plaintext_client(kafka_broker):
    admin = AdminClient(
        {
            "bootstrap.servers": kafka_broker.tls_bootstrap,
            "socket.timeout.ms": 3000,
        }
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_tls_listener_rejects_unknown_ca(kafka_broker, tmp_path):
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=unrelated CA",
            "-keyout",
            str(tmp_path / "other-ca.key"),
            "-out",
            str(other_ca),
        ],
        check=True,
        capture_output=True,
    )
    admin = AdminClient(
        {
            "bootstrap.servers": kafka_broker.tls_bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(other_ca),
            "socket.timeout.ms": 3000,
        }
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_write_to_topic_sets_keys_and_timestamps(kafka_broker, new_topic):
    topic = new_topic()
    pairs = [("patient-a", b"v1", _BASE_MS), ("patient-b", b"v2", _BASE_MS + 5)]

    with _pipeline() as pipeline:
        _ = (
            pipeline
            | "CreatePairs" >> beam.Create(pairs)
            | "Stamp"
            >> beam.Map(
                lambda p: beam.window.TimestampedValue(
                    (p[0], p[1]), p[2] / 1000
                )
            )
            | "Write" >> WriteToKafkaTopic(topic, kafka_broker.bootstrap)
        )

    messages = _consume_all(kafka_broker.bootstrap, topic, 2)
    written = sorted((m.key(), m.value(), m.timestamp()[1]) for m in messages)
    assert written == [
        (b"patient-a", b"v1", _BASE_MS),
        (b"patient-b", b"v2", _BASE_MS + 5),
    ]


def test_write_alerts_keys_by_patient(kafka_broker, new_topic):
    topic = new_topic()
    alert = {
        "alert_id": "a-1",
        "patient_id": "p-0042",
        "tier": "SEVERE",
        "kind": "desaturation",
        "event_time": _BASE_MS,
        "window_start": _BASE_MS - 60_000,
        "reasons": [],
    }

    with _pipeline() as pipeline:
        _ = (
            pipeline
            | "CreateAlerts" >> beam.Create([alert])
            | "Write" >> WriteAlertsToKafka(topic, kafka_broker.bootstrap)
        )

    (message,) = _consume_all(kafka_broker.bootstrap, topic, 1)
    assert message.key() == b"p-0042"
    assert message.value()[:2] == b"\xc3\x01"
    # Single-object header: 2 marker bytes and an 8-byte fingerprint.
    body = fastavro.schemaless_reader(
        io.BytesIO(message.value()[10:]), load_schema(ALERT)
    )
    assert body["alert_id"] == "a-1"
    assert body["tier"] == "SEVERE"
