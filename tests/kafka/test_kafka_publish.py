"""Tests of the devices.kafka_publish CLI.

Tests marked ``kafka`` publish to the broker of scripts/kafka.sh.
"""

import datetime
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from devices import kafka_publish
from schemas import (
    VITAL_BATCH,
    VITAL_READING,
    decode_payload,
    read_container,
    write_container,
)

_BASE_MS = 1_735_689_600_000
_CONSUME_TIMEOUT_SEC = 30


def _reading(patient: str, sequence: int) -> dict:
    return {
        "patient_id": patient,
        "device_id": f"dev-{patient}",
        "sequence": sequence,
        "event_time": _BASE_MS + sequence * 1000,
        "heart_rate_bpm": 70.0 + sequence,
        "signal_quality": 0.8,
    }


def _batch(patient: str) -> dict:
    return {
        "patient_id": patient,
        "device_id": f"dev-{patient}",
        "first_sequence": 100,
        "start_time": _BASE_MS + 500,
        "interval_ms": 1000,
        "heart_rate_bpm": [71.0, 72.0],
        "signal_quality": [0.9, 0.9],
    }


def _consume(bootstrap: str, topic: str, partitions: int, count: int):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "check"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
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


def test_encode_message_uses_event_time(tmp_path):
    path = tmp_path / "readings.avro"
    write_container(path, VITAL_READING, [_reading("p-1", 4)])
    (record,) = read_container(path)

    key, payload, timestamp_ms = kafka_publish.encode_message(record)

    assert isinstance(record["event_time"], datetime.datetime)
    assert key == "p-1"
    assert timestamp_ms == _BASE_MS + 4000
    assert decode_payload(payload)[1]["sequence"] == 4


def test_encode_message_rejects_unknown_record():
    with pytest.raises(ValueError, match="neither"):
        kafka_publish.encode_message({"patient_id": "p-1"})


@pytest.mark.kafka
def test_publish_keys_and_timestamps(kafka_broker, new_topic, tmp_path):
    topic = new_topic(partitions=3)
    readings = tmp_path / "readings.avro"
    batches = tmp_path / "batches.avro"
    write_container(
        readings,
        VITAL_READING,
        [_reading(p, s) for p in ("p-1", "p-2") for s in range(3)],
    )
    write_container(batches, VITAL_BATCH, [_batch("p-3")])

    exit_code = kafka_publish.main(
        [
            "--bootstrap",
            kafka_broker.bootstrap,
            "--topic",
            topic,
            "--input",
            str(readings),
            str(batches),
        ]
    )

    assert exit_code == 0
    messages = _consume(kafka_broker.bootstrap, topic, 3, 7)
    assert len(messages) == 7
    for message in messages:
        kind, record = decode_payload(message.value())
        assert message.key().decode() == record["patient_id"]
        if kind == VITAL_READING:
            expected_ms = _BASE_MS + record["sequence"] * 1000
        else:
            expected_ms = _BASE_MS + 500
        assert message.timestamp()[1] == expected_ms
    partitions_of = {}
    for message in messages:
        partitions_of.setdefault(message.key(), set()).add(message.partition())
    assert all(len(parts) == 1 for parts in partitions_of.values())


def test_publish_reports_unreachable_broker(tmp_path, capsys):
    path = tmp_path / "readings.avro"
    write_container(path, VITAL_READING, [_reading("p-1", 0)])

    exit_code = kafka_publish.main(
        [
            "--bootstrap",
            "127.0.0.1:1",
            "--input",
            str(path),
            "--kafka_config",
            "message.timeout.ms=2000",
        ]
    )

    assert exit_code == 1
    assert "failed 1" in capsys.readouterr().err
