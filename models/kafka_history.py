"""Read training history from an offset range of a Kafka topic.

Each message contains one Avro single-object payload, a VitalReading or a
VitalBatch, as `devices.kafka_publish` and the gateways write them. The
reader assigns each partition at its start offset and stops at its stop
offset (exclusive). It uses a throwaway consumer group and never commits
offsets, so training leaves no trace on the cluster.

Ranges are written ``PARTITION:START-STOP`` and joined with commas, for
example ``0:100-5000,1:0-4200``. ``START`` may be ``earliest`` (the
partition's earliest retained offset) and ``STOP`` may be ``end`` (its
high watermark when the read starts). ``*`` as the partition applies the
range to every partition of the topic, so ``*:earliest-end`` reads all
that the topic retains.
"""

import collections
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas import DecodeError, decode_payload
from transforms.kafka_io import client_config

_LOGGER = logging.getLogger(__name__)

EARLIEST = "earliest"
END = "end"
ALL_PARTITIONS = "*"
# How long metadata and watermark requests may take before the broker
# counts as unreachable.
_REQUEST_TIMEOUT_SEC = 10.0
# How long a read may go without a new message before it fails. An
# estimate: a reachable broker delivers within seconds of an assignment.
_IDLE_TIMEOUT_SEC = 30.0
_POLL_TIMEOUT_SEC = 1.0
_MAX_POLL_MESSAGES = 500
# A long read logs its progress at most this often.
_PROGRESS_EVERY_SEC = 10.0
_RANGE_PATTERN = re.compile(
    r"(?P<partition>\*|\d+):(?P<start>\d+|earliest)-(?P<stop>\d+|end)"
)


class KafkaHistoryError(ValueError):
    """An offset range or a read that cannot produce training history."""


@dataclasses.dataclass(frozen=True)
class RangeSpec:
    """One requested range, before the broker's offsets are known.

    Attributes:
        partition: Partition number, or `ALL_PARTITIONS`.
        start: First offset to read, or `EARLIEST`.
        stop: Offset after the last one to read, or `END`.
    """

    partition: int | str
    start: int | str
    stop: int | str


@dataclasses.dataclass(frozen=True)
class OffsetRange:
    """Offsets ``[start, stop)`` of one partition, resolved on the broker."""

    partition: int
    start: int
    stop: int


def parse_offsets(text: str) -> list[RangeSpec]:
    """Parse ``PARTITION:START-STOP`` ranges joined with commas.

    Raises:
        KafkaHistoryError: If an entry is malformed, a numeric start is
            after its stop, a partition appears twice, or ``*`` is mixed
            with numbered partitions.
    """
    specs = []
    for entry in text.split(","):
        entry = entry.strip()
        match = _RANGE_PATTERN.fullmatch(entry)
        if match is None:
            raise KafkaHistoryError(
                f"invalid --kafka_offsets entry {entry!r}: expected "
                "PARTITION:START-STOP such as 0:100-5000, with START "
                "'earliest', STOP 'end' or PARTITION '*' allowed"
            )
        spec = RangeSpec(
            _number_or(match["partition"]),
            _number_or(match["start"]),
            _number_or(match["stop"]),
        )
        if _is_number(spec.start) and _is_number(spec.stop):
            if spec.start > spec.stop:
                raise KafkaHistoryError(
                    f"invalid --kafka_offsets entry {entry!r}: start offset "
                    "is after the stop offset"
                )
        specs.append(spec)
    _check_partitions(text, specs)
    return specs


def _number_or(token: str) -> int | str:
    return int(token) if token.isdigit() else token


def _is_number(value: int | str) -> bool:
    return isinstance(value, int)


def _check_partitions(text: str, specs: list[RangeSpec]) -> None:
    partitions = [spec.partition for spec in specs]
    if ALL_PARTITIONS in partitions and len(partitions) > 1:
        raise KafkaHistoryError(
            f"invalid --kafka_offsets {text!r}: '*' applies to every "
            "partition and cannot be combined with other entries"
        )
    repeated = sorted(
        {p for p in partitions if partitions.count(p) > 1}, key=str
    )
    if repeated:
        raise KafkaHistoryError(
            f"invalid --kafka_offsets {text!r}: partition {repeated[0]} "
            "appears more than once"
        )


def create_consumer(bootstrap: str, config: dict[str, str]) -> Consumer:
    """Create a consumer in a new group that never commits offsets.

    Raises:
        KafkaHistoryError: If librdkafka rejects the configuration. The
            message names the error code only, because a value can be a
            secret.
    """
    merged = client_config(
        bootstrap,
        config,
        **{
            "group.id": f"vitalwatch-train-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # A range that retention deletes during the read fails
            # instead of silently jumping to another offset.
            "auto.offset.reset": "error",
        },
    )
    try:
        return Consumer(merged)
    except KafkaException as error:
        raise KafkaHistoryError(
            "librdkafka rejected the consumer configuration "
            f"({error.args[0].name()}); check the --kafka_config entries"
        ) from None


def resolve_ranges(
    consumer: Consumer, topic: str, specs: list[RangeSpec]
) -> list[OffsetRange]:
    """Turn requested ranges into offsets and check them on the broker.

    Raises:
        KafkaHistoryError: If the topic or a partition does not exist, a
            range lies outside the partition's retained offsets, or the
            broker does not respond within 10 s.
    """
    partitions = _topic_partitions(consumer, topic)
    if specs[0].partition == ALL_PARTITIONS:
        specs = [dataclasses.replace(specs[0], partition=p) for p in partitions]
    ranges = []
    for spec in specs:
        if spec.partition not in partitions:
            raise KafkaHistoryError(
                f"partition {spec.partition} not found in topic {topic!r}, "
                f"which has partitions 0 to {max(partitions)}"
            )
        low, high = _watermarks(consumer, topic, spec.partition)
        ranges.append(_resolve(topic, spec, low, high))
    return ranges


def _topic_partitions(consumer: Consumer, topic: str) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, _REQUEST_TIMEOUT_SEC)
    except KafkaException as error:
        raise _request_error(f"listing topic {topic!r}", error) from None
    topic_metadata = metadata.topics[topic]
    if topic_metadata.error is not None:
        if topic_metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaHistoryError(f"topic {topic!r} not found")
        raise KafkaHistoryError(
            f"reading metadata of topic {topic!r} failed: "
            f"{topic_metadata.error}"
        )
    return sorted(topic_metadata.partitions)


def _watermarks(consumer: Consumer, topic: str, partition: int):
    try:
        return consumer.get_watermark_offsets(
            TopicPartition(topic, partition), _REQUEST_TIMEOUT_SEC
        )
    except KafkaException as error:
        raise _request_error(
            f"reading the offsets of {topic}/{partition}", error
        ) from None


def _request_error(action: str, error: KafkaException) -> KafkaHistoryError:
    kafka_error = error.args[0]
    if kafka_error.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT):
        return KafkaHistoryError(
            f"{action} timed out after {_REQUEST_TIMEOUT_SEC:g} s "
            f"({kafka_error.name()}); check --kafka_bootstrap, "
            "--kafka_config and that the broker is running"
        )
    return KafkaHistoryError(f"{action} failed: {kafka_error}")


def _resolve(topic: str, spec: RangeSpec, low: int, high: int) -> OffsetRange:
    start = low if spec.start == EARLIEST else spec.start
    stop = high if spec.stop == END else spec.stop
    name = f"{spec.partition}:{spec.start}-{spec.stop}"
    retained = f"retained offsets of {topic}/{spec.partition} are {low}-{high}"
    if start < low:
        raise KafkaHistoryError(
            f"offset range {name} starts before the earliest retained "
            f"offset: the {retained}"
        )
    if stop > high:
        raise KafkaHistoryError(
            f"offset range {name} ends after the current end offset: the "
            f"{retained}"
        )
    if start > stop:
        raise KafkaHistoryError(
            f"offset range {name} starts after it stops: the {retained}"
        )
    return OffsetRange(spec.partition, start, stop)


@dataclasses.dataclass
class ReadSummary:
    """Counts of one read, filled while the records are consumed.

    Attributes:
        messages: Messages read inside the ranges.
        records: Messages decoded into records.
        skipped: Messages that did not decode, by `DecodeError` reason.
    """

    messages: int = 0
    records: int = 0
    skipped: collections.Counter = dataclasses.field(
        default_factory=collections.Counter
    )


def read_records(
    consumer: Consumer,
    topic: str,
    ranges: list[OffsetRange],
    summary: ReadSummary,
) -> Iterator[dict]:
    """Yield the decoded records of every message in the ranges.

    Messages that do not decode are counted in `summary.skipped` and
    skipped. The caller closes the consumer.

    Raises:
        KafkaHistoryError: If the broker reports an error, a range is no
            longer retained, or no message arrives for 30 s.
    """
    pending = {r.partition: r for r in ranges if r.stop > r.start}
    total = sum(r.stop - r.start for r in pending.values())
    consumer.assign(
        [TopicPartition(topic, r.partition, r.start) for r in pending.values()]
    )
    last_log = last_message = time.monotonic()
    while pending:
        try:
            messages = consumer.consume(_MAX_POLL_MESSAGES, _POLL_TIMEOUT_SEC)
        except KafkaException as error:
            raise KafkaHistoryError(
                f"reading {topic} failed: {error.args[0]}"
            ) from None
        if messages:
            last_message = time.monotonic()
        for message in messages:
            yield from _records_of(message, topic, pending, summary)
        _finish_skipped_ranges(consumer, topic, pending)
        if pending and time.monotonic() - last_message > _IDLE_TIMEOUT_SEC:
            raise KafkaHistoryError(
                f"reading {topic} timed out: no message for "
                f"{_IDLE_TIMEOUT_SEC:g} s with partitions "
                f"{sorted(pending)} unfinished; check the broker"
            )
        if time.monotonic() - last_log >= _PROGRESS_EVERY_SEC:
            last_log = time.monotonic()
            _LOGGER.info(
                "Read %d/%d messages of %s", summary.messages, total, topic
            )
    _log_summary(topic, summary)


def _records_of(message, topic, pending, summary) -> Iterator[dict]:
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        raise KafkaHistoryError(f"reading {topic} failed: {error}")
    offset_range = pending.get(message.partition())
    if offset_range is None or message.offset() >= offset_range.stop:
        # Prefetched messages past the stop offset of a finished range.
        return
    summary.messages += 1
    if message.offset() + 1 >= offset_range.stop:
        del pending[message.partition()]
    try:
        _, record = decode_payload(message.value() or b"")
    except DecodeError as error:
        summary.skipped[error.reason] += 1
        return
    summary.records += 1
    yield record


def _finish_skipped_ranges(consumer, topic, pending) -> None:
    """Drop ranges whose last offsets hold no message.

    Compaction and transaction markers leave offsets without a message,
    so the consumer's position can pass the stop without delivering it.
    """
    if not pending:
        return
    positions = consumer.position(
        [TopicPartition(topic, partition) for partition in pending]
    )
    for position in positions:
        if position.offset >= pending[position.partition].stop:
            del pending[position.partition]


def _log_summary(topic: str, summary: ReadSummary) -> None:
    reasons = ", ".join(
        f"{reason}={count}" for reason, count in sorted(summary.skipped.items())
    )
    _LOGGER.info(
        "Read %d messages of %s: %d decoded, %d skipped (%s)",
        summary.messages,
        topic,
        summary.records,
        sum(summary.skipped.values()),
        reasons or "none",
    )


def describe(
    topic: str, ranges: list[OffsetRange], summary: ReadSummary
) -> dict:
    """Describe a read for the model metadata, as JSON-ready values."""
    return {
        "kind": "kafka",
        "topic": topic,
        "offset_ranges": [
            {
                "partition": r.partition,
                "start_offset": r.start,
                "stop_offset": r.stop,
            }
            for r in ranges
        ],
        "messages": summary.messages,
        "records": summary.records,
        "skipped": dict(sorted(summary.skipped.items())),
    }
