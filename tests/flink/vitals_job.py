"""Helpers that feed a real recording through Kafka to the Flink job.

CinC 2015 record t430s is a true extreme-tachycardia alarm. Its replay
is published one VitalReading per message, so that the stream can be cut
at any reading for the recovery tests.

The replay is stamped to start ahead of the wall clock. The Kafka source
moves an idle partition's watermark to the wall clock minus 60 s. With
the recordings' default 2026-01-01 stamps, that jump would fire the
silence timers and turn every reading published after a pause into a
late dead letter. With event times ahead of the wall clock only the
readings move the watermark, so every run raises the same alerts with
the same ids. The pipeline must then accept readings that far ahead
(`--max_future_skew_sec`), and the broker must accept such timestamps,
which Kafka limits with `log.message.timestamp.after.max.ms` (3,600,000
ms on the local Kafka 4.1.1 broker).
"""

import dataclasses
import functools
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devices import edge_replay, labels
from devices.kafka_publish import publish
from schemas import ALERT, DEAD_LETTER, decode_record

RECORD = "t430s"
PATIENT_ID = f"rec-cinc2015-{RECORD}"
DEVICE_ID = f"edge-cinc2015-{RECORD}"
# How far ahead of the wall clock the replay starts. The tests finish well
# within it, and it stays under the broker's one-hour limit.
LEAD_SEC = 20 * 60
MAX_FUTURE_SKEW_SEC = 2 * 60 * 60
# The fast path raises the SEVERE tachycardia alert about 271 s into
# t430s, near the monitor's alarm at 300 s.
TACHYCARDIA_OFFSET_SEC = (240, 300)
# Starts with neither the Avro single-object marker nor the Confluent
# magic byte, so parsing rejects it as unknown_framing.
POISON_PAYLOAD = b"not an avro payload"
_KAFKA_TIMEOUT_SEC = 30
_POLL_SEC = 0.5


@dataclasses.dataclass(frozen=True)
class Replay:
    """One replayed recording as VitalReading dicts in sequence order."""

    start_epoch_ms: int
    readings: list[dict]

    def offset_sec(self, event_time_ms: int) -> float:
        return (event_time_ms - self.start_epoch_ms) / 1000


@functools.cache
def replay_t430s(start_epoch_ms: int) -> Replay:
    """Replay t430s from the labelled data folder.

    Raises:
        FileNotFoundError: The data folder or the record is missing.
    """
    data_dir = labels.resolve_data_dir()
    recordings = labels.list_recordings(data_dir, (labels.CINC2015,))
    matches = [r for r in recordings if r.name == RECORD]
    if not matches:
        raise FileNotFoundError(f"record {RECORD} not found in {data_dir}")
    result = edge_replay.replay_record(matches[0], start_epoch_ms)
    return Replay(start_epoch_ms, list(result.readings()))


def start_ahead_of_now() -> int:
    """Return a start time LEAD_SEC ahead, on a whole minute."""
    minute_ms = 60_000
    ahead_ms = int(time.time() * 1000) + LEAD_SEC * 1000
    return ahead_ms // minute_ms * minute_ms


class _Deliveries:
    def __init__(self):
        self.sent = 0
        self.failed = 0

    def on_delivery(self, error, message):
        if error is not None:
            self.failed += 1

    def print(self, final=False):
        pass


def publish_readings(bootstrap: str, topic: str, readings: list[dict]) -> None:
    """Publish readings keyed by patient id, as devices.kafka_publish does.

    Raises:
        RuntimeError: A message was not acknowledged by the broker.
    """
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}
    )
    deliveries = _Deliveries()
    publish(producer, topic, readings, deliveries)
    if deliveries.failed:
        raise RuntimeError(f"{deliveries.failed} messages to {topic} failed")


def publish_poison(bootstrap: str, topic: str, timestamp_ms: int) -> None:
    """Publish one payload that is not Avro, which must be dead-lettered."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(
        topic, value=POISON_PAYLOAD, key=b"poison", timestamp=timestamp_ms
    )
    if producer.flush(_KAFKA_TIMEOUT_SEC):
        raise RuntimeError(f"poison message to {topic} not acknowledged")


def create_topics(bootstrap: str, prefix: str, names: list[str]) -> dict:
    """Create one-partition topics named `<prefix>-<name>`; map name to it."""
    topics = {name: f"{prefix}-{name}" for name in names}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1) for topic in topics.values()]
    )
    for future in futures.values():
        future.result(timeout=_KAFKA_TIMEOUT_SEC)
    return topics


def delete_topics(bootstrap: str, topics: dict) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(list(topics.values())).values():
        future.result(timeout=_KAFKA_TIMEOUT_SEC)


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """Return the group's committed offset of partition 0, -1001 if none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (position,) = consumer.committed(
            [TopicPartition(topic, 0)], _KAFKA_TIMEOUT_SEC
        )
        return position.offset
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Return every (key, value) of a one-partition topic, from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        partition = TopicPartition(topic, 0)
        _, high = consumer.get_watermark_offsets(partition, _KAFKA_TIMEOUT_SEC)
        messages = []
        if high == 0:
            return messages
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + _KAFKA_TIMEOUT_SEC
        while len(messages) < high and time.monotonic() < deadline:
            for message in consumer.consume(500, _POLL_SEC):
                if message.error() is None:
                    messages.append((message.key(), message.value()))
        if len(messages) < high:
            raise TimeoutError(
                f"read {len(messages)} of {high} messages of {topic} "
                f"within {_KAFKA_TIMEOUT_SEC}s"
            )
        return messages
    finally:
        consumer.close()


def read_alerts(bootstrap: str, topic: str) -> list[dict]:
    """Return the alerts in a topic, checking that keys are patient ids."""
    alerts = []
    for key, value in read_topic(bootstrap, topic):
        alert = decode_record(ALERT, value)
        if key.decode() != alert["patient_id"]:
            raise ValueError("alert key is not the alert's patient id")
        alerts.append(alert)
    return alerts


def read_dead_letters(bootstrap: str, topic: str) -> list[dict]:
    messages = read_topic(bootstrap, topic)
    return [decode_record(DEAD_LETTER, value) for _, value in messages]
