"""Publish recorded VitalReading and VitalBatch records to a Kafka topic.

Reads Avro container files, as written by the simulator or the edge replay
tool, and sends each record as one Avro single-object payload keyed by its
pseudonymous patient id, so that one patient's readings stay in order in one
partition. The message timestamp is the record's event time (``event_time``
of a reading, ``start_time`` of a batch), which the pipeline's Kafka source
uses as the element timestamp.

Usage::

    scripts/kafka.sh start
    scripts/kafka.sh topic create vitals 3
    python -m devices.kafka_publish --bootstrap 127.0.0.1:19092 \\
        --topic vitals --input out/sim/*.avro

The producer is idempotent (``enable.idempotence=true``, ``acks=all``), so
librdkafka's own retries never duplicate a message. Running the command
twice publishes everything twice; the pipeline de-duplicates by
``(device_id, sequence)``.
"""

import argparse
import sys
import time
from collections.abc import Iterable, Iterator

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas import encode_vitals, read_container

# Seconds between two progress lines.
_PROGRESS_INTERVAL_SEC = 1.0
# How long the final flush waits for the broker to acknowledge everything.
_FLUSH_TIMEOUT_SEC = 60.0


def encode_message(record: dict) -> tuple[str, bytes, int]:
    """Return (key, single-object payload, timestamp in ms) of one record.

    Raises:
        ValueError: If the record is neither a VitalReading nor a VitalBatch.
    """
    payload, event_time_ms = encode_vitals(record)
    return record["patient_id"], payload, event_time_ms


def _records(paths: Iterable[str]) -> Iterator[dict]:
    for path in paths:
        yield from read_container(path)


def parse_config(entries: Iterable[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` librdkafka settings without printing any value."""
    config = {}
    for entry in entries:
        key, separator, value = entry.partition("=")
        if not separator or not key.strip():
            raise ValueError("invalid --kafka_config entry: expected KEY=VALUE")
        config[key.strip()] = value
    return config


class _Progress:
    """Count deliveries and print a progress line to stderr."""

    def __init__(self):
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.first_error: KafkaError | None = None
        self._last_print = 0.0

    def on_delivery(self, error, message):
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = error

    def print(self, final: bool = False):
        now = time.monotonic()
        if not final and now - self._last_print < _PROGRESS_INTERVAL_SEC:
            return
        self._last_print = now
        end = "\n" if final else "\r"
        print(
            f"sent {self.sent}, delivered {self.delivered}, "
            f"failed {self.failed}",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def publish(
    producer: Producer, topic: str, records: Iterable[dict], progress
) -> None:
    """Produce every record to ``topic`` and wait until all are delivered.

    Raises:
        RuntimeError: If a record cannot be encoded, or messages are still
            unacknowledged after the flush timeout.
    """
    for index, record in enumerate(records):
        try:
            key, payload, timestamp_ms = encode_message(record)
        except (ValueError, TypeError) as error:
            # fastavro's message quotes the rejected value, which must not
            # be printed, so only the error type is reported.
            raise RuntimeError(
                f"record {index} could not be encoded as Avro "
                f"({type(error).__name__}); check it against the schema"
            ) from None
        while True:
            try:
                producer.produce(
                    topic,
                    value=payload,
                    key=key.encode("utf-8"),
                    timestamp=timestamp_ms,
                    on_delivery=progress.on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: serve deliveries to drain it.
                producer.poll(0.5)
        progress.sent += 1
        producer.poll(0)
        progress.print()
    pending = producer.flush(_FLUSH_TIMEOUT_SEC)
    if pending:
        raise RuntimeError(
            f"{pending} messages not acknowledged within "
            f"{_FLUSH_TIMEOUT_SEC:g}s; check that the broker is reachable"
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devices.kafka_publish",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "--bootstrap",
        default="127.0.0.1:19092",
        help="Comma-separated host:port list of Kafka brokers. "
        "Default 127.0.0.1:19092.",
    )
    parser.add_argument(
        "--topic", default="vitals", help="Topic to publish to. Default vitals."
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE.avro",
        help="Avro container files of VitalReading or VitalBatch records.",
    )
    parser.add_argument(
        "--kafka_config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka producer property, repeatable, for example "
        "security.protocol=SSL. Default none.",
    )
    return parser.parse_args(argv)


def _create_producer(bootstrap: str, entries: list[str]) -> Producer:
    """Create the idempotent producer.

    Raises:
        ValueError: If a setting is malformed or rejected by librdkafka.
            The message never contains a setting's value.
    """
    config = {"bootstrap.servers": bootstrap}
    config.update(parse_config(entries))
    config.update({"enable.idempotence": True, "acks": "all"})
    try:
        return Producer(config)
    except KafkaException as error:
        # librdkafka's message can quote the rejected value, a secret.
        raise ValueError(
            "librdkafka rejected the producer configuration "
            f"({error.args[0].name()}); check the --kafka_config entries"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return 0 when every record was delivered."""
    args = _parse_args(argv)
    try:
        producer = _create_producer(args.bootstrap, args.kafka_config)
    except ValueError as error:
        print(f"kafka_publish: {error}", file=sys.stderr)
        return 2
    progress = _Progress()
    try:
        publish(producer, args.topic, _records(args.input), progress)
    except (OSError, RuntimeError) as error:
        progress.print(final=True)
        print(f"kafka_publish: {error}", file=sys.stderr)
        return 1
    progress.print(final=True)
    if progress.failed:
        print(
            f"kafka_publish: {progress.failed} messages failed, first "
            f"error: {progress.first_error}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
