"""Read vital-sign payloads from Kafka and write keyed records back to it.

Built on confluent-kafka (librdkafka), so it runs in the Python SDK harness
on every portable runner without a Java expansion service.

Source: `ReadVitalsFromKafka` emits one ``(source, value)`` tuple per Kafka
message. ``source`` is ``"kafka:<topic>/<partition>@<offset>"``, the shape
of the dead-letter ``source`` field, and ``value`` is the message value as
raw bytes (``b""`` for an empty or null value). Decoding is left to the next
step, so a poison message reaches the decoder's dead-letter output instead
of failing the read. Each element is timestamped with the Kafka message
timestamp, which vitalwatch producers set to the reading's event time.

The source is a splittable DoFn with one `OffsetRange` restriction per
partition. Its watermark is the maximum message timestamp seen minus
``max_out_of_orderness_sec``. When a partition is caught up (its position
has reached the broker's high watermark and a poll returned nothing), the
watermark advances to wall-clock time minus the same bound, so an idle
partition does not hold back downstream windows.

Delivery guarantee (at-least-once): offsets are committed to the consumer
group only from a bundle-finalization callback, which a runner calls after
it has durably committed the bundle's output. A restarted job starts each
partition from the group's committed offset, so no message is lost, but
messages read after the last commit are read again. The
``(device_id, sequence)`` de-duplication downstream removes those repeats.
Per runner:

* FnApiRunner (tests): finalization runs right after each bundle, which is
  tested in ``tests/kafka``.
* Dataflow: bundle finalization needs Runner v2; not run from here. In
  Dataflow's own checkpoints the restriction position is the source of
  truth, and the committed offset only matters to a new job that replaces
  a cancelled one.
* Flink and other runners: NOTE: not verified here. A runner that never
  calls finalization callbacks leaves offsets uncommitted, so a new job
  re-reads from the last commit (more duplicates, no loss).

Sinks: `WriteToKafkaTopic` writes ``(key, value)`` pairs and
`WriteAlertsToKafka` writes Alert records keyed by pseudonymous patient id.
Both use an idempotent producer (``enable.idempotence=true``, ``acks=all``)
and flush in ``finish_bundle``, so a bundle only succeeds once the broker
has acknowledged every message. A retried bundle writes its messages again
(at-least-once), and consumers de-duplicate by ``alert_id``.

Client settings such as TLS and SASL are passed through unchanged as the
``config`` dict of librdkafka properties, which pipelines fill from repeated
``--kafka_config KEY=VALUE`` flags. They can contain secrets, so this module
never logs them. They are still pickled into
the job graph, so prefer file-based secrets (``ssl.key.location``).

Example::

    readings = (
        pipeline
        | "ReadVitals" >> ReadVitalsFromKafka(
            topic="vitals", bootstrap_servers="127.0.0.1:19092",
            group_id="vitalwatch"))
"""

import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

import apache_beam as beam
import fastavro
from apache_beam.io.restriction_trackers import (
    OffsetRange,
    OffsetRestrictionTracker,
)
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from schemas import ALERT, encode_record

_LOGGER = logging.getLogger(__name__)
_METRICS_NAMESPACE = "kafka_io"

# Stop offset of an unbounded restriction: larger than any Kafka offset.
_UNBOUNDED_STOP = sys.maxsize
# How long one poll waits to fill a batch. consume() waits the full time
# unless the batch fills, so this bounds the latency a poll adds.
_POLL_TIMEOUT_SEC = 0.1
# Delay before a caught-up unbounded partition is read again.
_IDLE_RESUME_DELAY_SEC = 1.0
# Messages taken from librdkafka's prefetch queue per poll.
_MAX_POLL_MESSAGES = 500
# A read checkpoints after this long so that the runner commits its output
# and the finalization callback commits the offsets. The Flink runner hands
# a read's output downstream only when it ends, so this also bounds the
# latency that reading adds.
DEFAULT_MAX_READ_SEC = 1.0
# Assumed bound on how far behind the newest reading a gateway or phone may
# deliver a reading. An estimate, not measured, so tune it per deployment.
_DEFAULT_MAX_OUT_OF_ORDERNESS_SEC = 60.0
# How long admin-style requests (metadata, offsets, commits) may take.
_REQUEST_TIMEOUT_SEC = 10.0
# How long finish_bundle waits for the broker to acknowledge every message.
_FLUSH_TIMEOUT_SEC = 30.0
_START_OFFSETS = ("earliest", "latest")
# Kafka errors that retrying a poll cannot fix.
_FATAL_READ_ERRORS = (
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
)


def client_config(
    bootstrap_servers: str, config: dict | None, **required
) -> dict:
    """Merge user settings with the settings this module depends on."""
    merged = {"bootstrap.servers": bootstrap_servers}
    merged.update(config or {})
    merged.update(required)
    return merged


def _source_of(topic: str, partition: int, offset: int) -> str:
    return f"kafka:{topic}/{partition}@{offset}"


# ---------------------------------------------------------------- source


class _ListPartitionsDoFn(beam.DoFn):
    """Emit ``(topic, partition, start_offset, stop_offset)`` per partition.

    The start is the group's committed offset, or the earliest or latest
    offset when the group has none. The stop is the high watermark at this
    moment in bounded mode, else `_UNBOUNDED_STOP`.
    """

    def __init__(self, consumer_config, start_offset, bounded):
        self._consumer_config = consumer_config
        self._start_offset = start_offset
        self._bounded = bounded

    def setup(self):
        self._consumer = Consumer(self._consumer_config)

    def teardown(self):
        self._consumer.close()

    def process(self, topic: str) -> Iterator[tuple[str, int, int, int]]:
        metadata = self._consumer.list_topics(topic, _REQUEST_TIMEOUT_SEC)
        topic_metadata = metadata.topics[topic]
        if topic_metadata.error is not None:
            raise KafkaException(topic_metadata.error)
        partitions = [
            TopicPartition(topic, partition)
            for partition in sorted(topic_metadata.partitions)
        ]
        committed = _retry_retriable(
            lambda: self._consumer.committed(partitions, _REQUEST_TIMEOUT_SEC)
        )
        for position in committed:
            low, high = self._consumer.get_watermark_offsets(
                position, _REQUEST_TIMEOUT_SEC
            )
            start = self._start_of(position, low, high)
            stop = max(high, start) if self._bounded else _UNBOUNDED_STOP
            yield topic, position.partition, start, stop

    def _start_of(self, committed: TopicPartition, low: int, high: int) -> int:
        if committed.offset < 0:
            return low if self._start_offset == "earliest" else high
        if committed.offset < low:
            # Retention deleted messages that the group never read.
            _LOGGER.warning(
                "Committed offset %s of %s/%s is below the earliest "
                "retained offset %s; messages in between were deleted",
                committed.offset,
                committed.topic,
                committed.partition,
                low,
            )
            Metrics.counter(_METRICS_NAMESPACE, "offsets_expired").inc()
            return low
        return committed.offset


class _CheckpointOnlyTracker(OffsetRestrictionTracker):
    """An offset tracker that splits only at the current position.

    A split in the middle of the remaining range would let two workers read
    one partition at once, and the one further ahead could commit an offset
    past messages that the other has not emitted yet.
    """

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None
        return super().try_split(fraction_of_remainder)

    def is_bounded(self):
        return self._range.stop != _UNBOUNDED_STOP


class _PartitionRestrictionProvider(RestrictionProvider):
    def initial_restriction(self, element):
        _, _, start, stop = element
        return OffsetRange(start, stop)

    def create_tracker(self, restriction):
        return _CheckpointOnlyTracker(restriction)

    def split(self, element, restriction):
        # One reader per partition, for the reason in _CheckpointOnlyTracker.
        yield restriction

    def restriction_size(self, element, restriction):
        # NOTE: an unbounded restriction reports a size of 1 because the
        # backlog is unknown here, so runners cannot autoscale on backlog.
        if restriction.stop == _UNBOUNDED_STOP:
            return 1
        return restriction.size()

    def truncate(self, element, restriction):
        # On drain, stop reading an unbounded partition.
        if restriction.stop == _UNBOUNDED_STOP:
            return None
        return restriction


class _EventTimeWatermarkProvider(
    beam.transforms.core.WatermarkEstimatorProvider
):
    def initial_estimator_state(self, element, restriction):
        return None

    def create_watermark_estimator(self, estimator_state):
        return beam.io.watermark_estimators.ManualWatermarkEstimator(
            estimator_state
        )


def _advance_watermark(estimator, candidate: Timestamp) -> None:
    current = estimator.current_watermark()
    if current is None or candidate > current:
        estimator.set_watermark(candidate)


_RESTRICTION_PARAM = beam.DoFn.RestrictionParam(_PartitionRestrictionProvider())
_WATERMARK_PARAM = beam.DoFn.WatermarkEstimatorParam(
    _EventTimeWatermarkProvider()
)


class _ReadPartitionDoFn(beam.DoFn):
    """Read one partition's offset range, as the module docstring describes."""

    def __init__(
        self,
        consumer_config,
        max_out_of_orderness_sec,
        commit_offsets,
        max_read_sec,
    ):
        self._consumer_config = consumer_config
        self._max_read_sec = max_read_sec
        self._max_out_of_orderness = Duration.of(max_out_of_orderness_sec)
        self._commit_offsets = commit_offsets
        self._records_read = Metrics.counter(_METRICS_NAMESPACE, "records_read")
        self._empty_values = Metrics.counter(_METRICS_NAMESPACE, "empty_values")
        self._commit_failures = Metrics.counter(
            _METRICS_NAMESPACE, "commit_failures"
        )

    def setup(self):
        # (topic, partition) -> [consumer, offset of the next message].
        self._readers = {}
        self._committer = None
        self._commit_lock = threading.Lock()

    def teardown(self):
        for consumer, _ in self._readers.values():
            consumer.close()
        self._readers = {}
        if self._committer is not None:
            self._committer.close()

    def process(
        self,
        element,
        # Beam passes positional placeholders such as the bundle finalizer
        # before the restriction and watermark keyword arguments, so the
        # finalizer must come first.
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=_RESTRICTION_PARAM,
        watermark_estimator=_WATERMARK_PARAM,
    ):
        topic, partition = element[0], element[1]
        restriction = tracker.current_restriction()
        next_offset = yield from self._read(
            topic, partition, tracker, watermark_estimator
        )
        if self._commit_offsets and next_offset > restriction.start:
            bundle_finalizer.register(
                functools.partial(self._commit, topic, partition, next_offset)
            )

    def _read(self, topic, partition, tracker, watermark_estimator):
        """Emit messages until the range ends or it is time to checkpoint.

        Returns:
            The offset of the next message to read, which is the offset to
            commit once the runner has committed this bundle's output.
        """
        restriction = tracker.current_restriction()
        next_offset = restriction.start
        if next_offset >= restriction.stop:
            return next_offset
        consumer = self._reader_at(topic, partition, restriction.start)
        deadline = time.monotonic() + self._max_read_sec
        while True:
            messages = consumer.consume(_MAX_POLL_MESSAGES, _POLL_TIMEOUT_SEC)
            for message in messages:
                if message.error() is not None:
                    self._check_read_error(message.error(), topic, partition)
                    continue
                if not tracker.try_claim(message.offset()):
                    return next_offset
                next_offset = message.offset() + 1
                self._readers[(topic, partition)][1] = next_offset
                yield self._timestamped(message, watermark_estimator)
                if next_offset >= restriction.stop:
                    return next_offset
            if not messages:
                next_offset, caught_up = self._position(
                    consumer, topic, partition, next_offset
                )
                if next_offset >= restriction.stop:
                    # Offsets up to the stop were skipped (compaction or
                    # transaction markers), so finish the range here.
                    tracker.try_claim(restriction.stop)
                    return next_offset
                if caught_up:
                    idle_watermark = (
                        Timestamp.now() - self._max_out_of_orderness
                    )
                    _advance_watermark(watermark_estimator, idle_watermark)
                    # NOTE: RestrictionTrackerView.is_bounded() returns None
                    # in Beam 2.62, so the restriction's stop decides.
                    if restriction.stop == _UNBOUNDED_STOP:
                        tracker.defer_remainder(
                            Duration.of(_IDLE_RESUME_DELAY_SEC)
                        )
                        return next_offset
            if time.monotonic() > deadline:
                tracker.defer_remainder()
                return next_offset

    def _timestamped(self, message, watermark_estimator):
        timestamp_type, timestamp_ms = message.timestamp()
        if timestamp_type == TIMESTAMP_NOT_AVAILABLE or timestamp_ms < 0:
            Metrics.counter(_METRICS_NAMESPACE, "missing_timestamps").inc()
            timestamp = Timestamp.now()
        else:
            timestamp = Timestamp(micros=timestamp_ms * 1000)
        _advance_watermark(
            watermark_estimator, timestamp - self._max_out_of_orderness
        )
        value = message.value()
        if not value:
            self._empty_values.inc()
        self._records_read.inc()
        source = _source_of(
            message.topic(), message.partition(), message.offset()
        )
        return TimestampedValue((source, value or b""), timestamp)

    def _reader_at(self, topic, partition, offset):
        reader = self._readers.get((topic, partition))
        if reader is None:
            reader = [Consumer(self._consumer_config), None]
            self._readers[(topic, partition)] = reader
        if reader[1] != offset:
            # assign() drops prefetched messages, so only re-assign when
            # the restriction does not continue where the last read ended.
            reader[0].assign([TopicPartition(topic, partition, offset)])
            reader[1] = offset
        return reader[0]

    def _position(self, consumer, topic, partition, next_offset):
        """Return (next offset, whether the partition is caught up)."""
        topic_partition = TopicPartition(topic, partition)
        (position,) = consumer.position([topic_partition])
        if position.offset > next_offset:
            next_offset = position.offset
            self._readers[(topic, partition)][1] = next_offset
        _, high = consumer.get_watermark_offsets(
            topic_partition, _REQUEST_TIMEOUT_SEC
        )
        return next_offset, next_offset >= high

    def _check_read_error(self, error, topic, partition):
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() in _FATAL_READ_ERRORS:
            raise KafkaException(error)
        Metrics.counter(_METRICS_NAMESPACE, "read_errors").inc()
        _LOGGER.warning(
            "Kafka read error on %s/%s, retrying: %s", topic, partition, error
        )

    def _commit(self, topic, partition, offset):
        """Commit ``offset`` to the group once the runner commits the bundle."""
        with self._commit_lock:
            if self._committer is None:
                self._committer = Consumer(self._consumer_config)
            try:
                self._committer.commit(
                    offsets=[TopicPartition(topic, partition, offset)],
                    asynchronous=False,
                )
            except KafkaException as error:
                # The bundle's output is safe. A later commit or, after a
                # restart, a re-read of these messages covers the gap.
                self._commit_failures.inc()
                _LOGGER.warning(
                    "Offset commit for %s/%s at %s failed: %s",
                    topic,
                    partition,
                    offset,
                    error,
                )


class ReadVitalsFromKafka(beam.PTransform):
    """Read Kafka messages as ``(source, value bytes)`` tuples.

    Args:
        topic: Topic name, or a list of names, to read in all partitions.
        bootstrap_servers: Comma-separated ``host:port`` list of brokers.
        group_id: Consumer group to resume from and commit offsets to.
        config: Extra librdkafka properties such as TLS and SASL settings.
            They are never logged.
        bounded: When True, stop at each partition's high watermark as it
            was when the read started (batch runs and tests). Default False.
        start_offset: ``"earliest"`` or ``"latest"``, used for a partition
            that has no committed offset in the group. Default earliest, so
            a new group loses no reading.
        max_out_of_orderness_sec: How far the watermark trails the newest
            message timestamp, and wall-clock time on an idle partition.
        commit_offsets: Commit offsets after the runner commits each bundle.
            Default True.
        max_read_sec: How long one read of a partition runs before it
            checkpoints and its output goes downstream. Default 1 s.

    Raises:
        ValueError: If no topic is named or ``start_offset`` is invalid.
    """

    def __init__(
        self,
        topic: str | list[str],
        bootstrap_servers: str,
        group_id: str,
        config: dict[str, str] | None = None,
        bounded: bool = False,
        start_offset: str = "earliest",
        max_out_of_orderness_sec: float = _DEFAULT_MAX_OUT_OF_ORDERNESS_SEC,
        commit_offsets: bool = True,
        max_read_sec: float = DEFAULT_MAX_READ_SEC,
    ):
        super().__init__()
        if max_read_sec <= 0:
            raise ValueError(
                f"invalid max_read_sec {max_read_sec!r}: must be positive"
            )
        topics = [topic] if isinstance(topic, str) else list(topic)
        if not topics or not all(topics):
            raise ValueError(
                f"invalid topic {topic!r}: name at least one non-empty topic"
            )
        if start_offset not in _START_OFFSETS:
            raise ValueError(
                f"invalid start_offset {start_offset!r}: expected one of "
                f"{_START_OFFSETS}"
            )
        self._topics = topics
        self._bootstrap_servers = bootstrap_servers
        self._group_id = group_id
        self._consumer_config = client_config(
            bootstrap_servers,
            config,
            **{
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
            },
        )
        self._bounded = bounded
        self._start_offset = start_offset
        self._max_out_of_orderness_sec = max_out_of_orderness_sec
        self._commit_offsets = commit_offsets
        self._max_read_sec = max_read_sec

    def expand(self, pbegin):
        _LOGGER.info(
            "Reading Kafka topics %s from %s as group %s, %s, watermark "
            "trailing by %ss",
            self._topics,
            self._bootstrap_servers,
            self._group_id,
            "bounded" if self._bounded else "unbounded",
            self._max_out_of_orderness_sec,
        )
        partitions = (
            pbegin
            | "CreateTopics" >> beam.Create(self._topics)
            | "ListPartitions"
            >> beam.ParDo(
                _ListPartitionsDoFn(
                    self._consumer_config, self._start_offset, self._bounded
                )
            )
        )

        spread = partitions | "SpreadPartitions" >> beam.Reshuffle()

        return spread | "ReadPartitions" >> beam.ParDo(
            _ReadPartitionDoFn(
                self._consumer_config,
                self._max_out_of_orderness_sec,
                self._commit_offsets,
                self._max_read_sec,
            )
        ).with_output_types(tuple[str, bytes])


# ----------------------------------------------------------------- sinks


class _ProduceDoFn(beam.DoFn):
    """Produce ``(key, value)`` pairs and fail the bundle on any lost write."""

    def __init__(self, topic, producer_config):
        self._topic = topic
        self._producer_config = producer_config
        self._written = Metrics.counter(_METRICS_NAMESPACE, "records_written")

    def setup(self):
        self._producer = Producer(self._producer_config)

    def start_bundle(self):
        self._errors = []

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        key, value = element
        # librdkafka reads 0 as "now"; elements in the global window carry
        # Beam's minimum timestamp, which Kafka cannot store.
        timestamp_ms = max(0, timestamp.micros // 1000)
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=value,
                    key=key.encode("utf-8"),
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: wait for deliveries to drain it.
                self._producer.poll(_POLL_TIMEOUT_SEC)
        self._producer.poll(0)

    def _on_delivery(self, error, message):
        if error is not None:
            self._errors.append(error)
        else:
            self._written.inc()

    def finish_bundle(self):
        pending = self._producer.flush(_FLUSH_TIMEOUT_SEC)
        if pending:
            raise RuntimeError(
                f"{pending} messages to topic {self._topic} were not "
                f"acknowledged within {_FLUSH_TIMEOUT_SEC}s; the bundle "
                "will be retried"
            )
        if self._errors:
            raise KafkaException(self._errors[0])

    def teardown(self):
        self._producer.flush(_FLUSH_TIMEOUT_SEC)


class WriteToKafkaTopic(beam.PTransform):
    """Write ``(key str, value bytes)`` pairs to one topic.

    The message timestamp is the element's event timestamp. Delivery is
    at-least-once: the producer is idempotent within a bundle, and a
    retried bundle writes its messages again.

    Args:
        topic: Existing topic to write to.
        bootstrap_servers: Comma-separated ``host:port`` list of brokers.
        config: Extra librdkafka properties such as TLS and SASL settings.
            They are never logged.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        config: dict[str, str] | None = None,
    ):
        super().__init__()
        self._topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._producer_config = client_config(
            bootstrap_servers,
            config,
            **{"enable.idempotence": True, "acks": "all"},
        )

    def expand(self, pairs):
        _LOGGER.info(
            "Writing to Kafka topic %s on %s",
            self._topic,
            self._bootstrap_servers,
        )
        return pairs | "ProduceMessages" >> beam.ParDo(
            _ProduceDoFn(self._topic, self._producer_config)
        )


def _key_alert(alert: dict) -> tuple[str, bytes]:
    return alert["patient_id"], encode_record(ALERT, alert)


class WriteAlertsToKafka(beam.PTransform):
    """Write Alert records keyed by pseudonymous patient id.

    Each record is Avro single-object encoded with the current Alert
    schema, so all alerts of one patient land in one partition in order.

    Args:
        topic: Existing alert topic.
        bootstrap_servers: Comma-separated ``host:port`` list of brokers.
        config: Extra librdkafka properties such as TLS and SASL settings.
            They are never logged.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        config: dict[str, str] | None = None,
    ):
        super().__init__()
        self._write = WriteToKafkaTopic(topic, bootstrap_servers, config)

    def expand(self, alerts):
        keyed = alerts | "EncodeAlerts" >> beam.Map(_key_alert)

        return keyed | "WriteAlerts" >> self._write


# -------------------------------------------------------- schema registry


class ConfluentSchemaResolver:
    """Resolve Confluent schema ids to parsed Avro writer schemas.

    An instance is a ``confluent_resolver`` for `schemas.decode_payload`.
    The registry client is created on first use, so the resolver can be
    pickled into a DoFn. Registry schema ids are immutable, so a resolved
    schema is cached for the life of the worker. Unknown ids are not
    cached, because they may be registered later.

    NOTE: schema references (a schema importing another subject) are not
    resolved; a referencing schema fails to parse and raises.

    Args:
        registry_config: ``SchemaRegistryClient`` settings, for example
            ``{"url": "https://registry:8081"}``; never logged.
        client_factory: Builds the client instead, for tests or a client
            with custom authentication.

    Raises:
        ValueError: If neither or both arguments are given.
    """

    def __init__(
        self,
        registry_config: dict | None = None,
        client_factory: Callable[[], object] | None = None,
    ):
        if (registry_config is None) == (client_factory is None):
            given = "neither" if registry_config is None else "both"
            raise ValueError(
                "ConfluentSchemaResolver needs exactly one of registry_config "
                f"and client_factory, got {given}"
            )
        self._registry_config = registry_config
        self._client_factory = client_factory
        self._client = None
        self._schemas = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_client=None, _schemas={}, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, schema_id: int) -> dict:
        """Return the parsed writer schema of ``schema_id``.

        Raises:
            KeyError: If the registry has no such id, or its schema is not
                Avro.
            SchemaRegistryError: On any other registry failure, so that the
                bundle is retried instead of dead-lettering valid data.
        """
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            schema = self._fetch(schema_id)
            self._schemas[schema_id] = schema
        return schema

    def _fetch(self, schema_id: int) -> dict:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self._registry_client().get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                raise KeyError(schema_id) from error
            raise
        if (registered.schema_type or "AVRO") != "AVRO":
            raise KeyError(schema_id)
        return fastavro.parse_schema(json.loads(registered.schema_str))

    def _registry_client(self):
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                from confluent_kafka.schema_registry import (
                    SchemaRegistryClient,
                )

                self._client = SchemaRegistryClient(self._registry_config)
        return self._client


__all__ = [
    "ConfluentSchemaResolver",
    "ReadVitalsFromKafka",
    "WriteAlertsToKafka",
    "WriteToKafkaTopic",
]


# A broker that has just started returns NOT_COORDINATOR or
# COORDINATOR_LOAD_IN_PROGRESS for a few seconds while it loads the
# consumer-offsets topic.
_COORDINATOR_STARTING = frozenset(
    (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    )
)
_RETRIES = 10
_RETRY_DELAY_SEC = 1.0


def _retry_retriable(call):
    """Call `call`, retrying Kafka errors that librdkafka marks retriable."""
    for attempt in range(_RETRIES):
        try:
            return call()
        except KafkaException as error:
            kafka_error = error.args[0] if error.args else None
            retriable = isinstance(kafka_error, KafkaError) and (
                kafka_error.retriable()
                or kafka_error.code() in _COORDINATOR_STARTING
            )
            if not retriable or attempt == _RETRIES - 1:
                raise
            _LOGGER.warning(
                "Kafka request failed with a retriable error, retrying in "
                "%.0f s: %s",
                _RETRY_DELAY_SEC,
                kafka_error,
            )
            time.sleep(_RETRY_DELAY_SEC)
    raise AssertionError("unreachable")
