"""Publish recorded VitalReading and VitalBatch records to a Pub/Sub topic.

Reads Avro container files, as written by the simulator or the edge replay
tool, and publishes each record as one message whose data is the Avro
single-object payload that the pipeline's `pubsub:` source parses. Each
message carries the record's event time (``event_time`` of a reading,
``start_time`` of a batch) in epoch milliseconds as the attribute
``event_time_ms``. The pipeline does not read it, because it takes event
time from the payload, but a Pub/Sub source can use it as the element
timestamp.

Usage against the local emulator::

    scripts/pubsub.sh start
    eval "$(scripts/pubsub.sh env)"
    python -m devices.pubsub_publish --project vitalwatch-local \\
        --topic vitals --create-subscription vitals-pipeline \\
        --input out/sim/*.avro

The command rejects a run without ``PUBSUB_EMULATOR_HOST`` unless
``--allow-real-pubsub`` is given. Without that variable the client library
connects to the real Pub/Sub service with whatever Google credentials the
machine has, so a forgotten ``export`` would send recorded vitals to a
real project instead of the emulator.

Publishing is at least once: the client retries a publish whose reply it
lost, and running the command twice publishes everything twice. The
pipeline de-duplicates by ``(device_id, sequence)``.
"""

import argparse
import concurrent.futures
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from schemas import encode_vitals, read_container

EMULATOR_HOST_ENV = "PUBSUB_EMULATOR_HOST"
EVENT_TIME_ATTRIBUTE = "event_time_ms"

# Seconds between two progress lines.
_PROGRESS_INTERVAL_SEC = 1.0
# How long the end of the run waits for the service to confirm every message.
_CONFIRM_TIMEOUT_SEC = 60.0
# Unconfirmed messages after which publish() blocks, so that a large file
# never sits in memory at once.
_MAX_IN_FLIGHT_MESSAGES = 1000
_ADMIN_TIMEOUT_SEC = 30.0


def encode_message(record: dict) -> tuple[bytes, int]:
    """Return (single-object payload, event time in ms) of one record.

    Raises:
        ValueError: If the record is neither a VitalReading nor a VitalBatch.
    """
    return encode_vitals(record)


def emulator_error(allow_real_pubsub: bool) -> str | None:
    """Return why the run must stop, or None when it may publish."""
    if os.environ.get(EMULATOR_HOST_ENV) or allow_real_pubsub:
        return None
    return (
        f"{EMULATOR_HOST_ENV} is not set, so the client would publish to "
        "the real Pub/Sub service. Start the emulator and run "
        "'eval \"$(scripts/pubsub.sh env)\"', or pass --allow-real-pubsub "
        "to publish to a real project on purpose."
    )


def _records(paths: Iterable[str]) -> Iterator[dict]:
    for path in paths:
        yield from read_container(path)


class _Progress:
    """Count publish confirmations and print a progress line to stderr."""

    def __init__(self):
        self.sent = 0
        self.confirmed = 0
        self.failed = 0
        self.first_error: BaseException | None = None
        self._lock = threading.Lock()
        self._last_print = 0.0

    def on_done(self, future: concurrent.futures.Future) -> None:
        # The client calls this from its own threads.
        error = future.exception()
        with self._lock:
            if error is None:
                self.confirmed += 1
                return
            self.failed += 1
            if self.first_error is None:
                self.first_error = error

    def print(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_print < _PROGRESS_INTERVAL_SEC:
            return
        self._last_print = now
        print(
            f"sent {self.sent}, confirmed {self.confirmed}, "
            f"failed {self.failed}",
            end="\n" if final else "\r",
            file=sys.stderr,
            flush=True,
        )


def create_topic(publisher, topic_path: str) -> None:
    """Create the topic unless it exists."""
    try:
        publisher.create_topic(name=topic_path, timeout=_ADMIN_TIMEOUT_SEC)
    except api_exceptions.AlreadyExists:
        pass


def create_subscription(subscriber, subscription_path, topic_path) -> None:
    """Create a pull subscription on the topic unless it exists."""
    try:
        subscriber.create_subscription(
            name=subscription_path,
            topic=topic_path,
            timeout=_ADMIN_TIMEOUT_SEC,
        )
    except api_exceptions.AlreadyExists:
        pass


def publish(
    publisher, topic_path: str, records: Iterable[dict], progress: _Progress
) -> None:
    """Publish every record and wait until the service confirms each one.

    Raises:
        RuntimeError: If a record cannot be encoded, or messages are still
            unconfirmed after the confirmation timeout.
    """
    futures = []
    for index, record in enumerate(records):
        try:
            payload, event_time_ms = encode_message(record)
        except (ValueError, TypeError) as error:
            # fastavro's message quotes the rejected value, which must not
            # be printed, so only the error type is reported.
            raise RuntimeError(
                f"record {index} could not be encoded as Avro "
                f"({type(error).__name__}); check it against the schema"
            ) from None
        future = publisher.publish(
            topic_path,
            payload,
            **{EVENT_TIME_ATTRIBUTE: str(event_time_ms)},
        )
        future.add_done_callback(progress.on_done)
        futures.append(future)
        progress.sent += 1
        progress.print()
    _, pending = concurrent.futures.wait(futures, timeout=_CONFIRM_TIMEOUT_SEC)
    if pending:
        raise RuntimeError(
            f"{len(pending)} messages not confirmed within "
            f"{_CONFIRM_TIMEOUT_SEC:g}s; check that Pub/Sub is reachable"
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devices.pubsub_publish",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "--project",
        default="vitalwatch-local",
        help="Google Cloud project id of the topic. The emulator accepts "
        "any id. Default vitalwatch-local.",
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
        "--create-topic",
        action="store_true",
        help="Create the topic first unless it exists. Default off.",
    )
    parser.add_argument(
        "--create-subscription",
        default="",
        metavar="SUBSCRIPTION",
        help="Create the topic and this pull subscription on it first, "
        "unless they exist, so that no message is published before the "
        "subscription can retain it. Default: none.",
    )
    parser.add_argument(
        "--allow-real-pubsub",
        action="store_true",
        help=f"Publish even though {EMULATOR_HOST_ENV} is not set, that is, "
        "to the real Pub/Sub service. Default off.",
    )
    return parser.parse_args(argv)


def _prepare(args, publisher, topic_path: str) -> None:
    if not (args.create_topic or args.create_subscription):
        return
    create_topic(publisher, topic_path)
    if args.create_subscription:
        subscriber = pubsub_v1.SubscriberClient()
        path = subscriber.subscription_path(
            args.project, args.create_subscription
        )
        with subscriber:
            create_subscription(subscriber, path, topic_path)
        print(f"subscription {path} is ready", file=sys.stderr)


def _make_publisher():
    flow_control = pubsub_v1.types.PublishFlowControl(
        message_limit=_MAX_IN_FLIGHT_MESSAGES,
        limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK,
    )
    return pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(
            flow_control=flow_control
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return 0 when every record was confirmed."""
    args = _parse_args(argv)
    # Checked before any client exists, because creating one without the
    # variable already looks up real Google credentials.
    error = emulator_error(args.allow_real_pubsub)
    if error:
        print(f"pubsub_publish: {error}", file=sys.stderr)
        return 2

    publisher = _make_publisher()
    topic_path = publisher.topic_path(args.project, args.topic)
    target = os.environ.get(EMULATOR_HOST_ENV) or "the real Pub/Sub service"
    print(f"publishing to {topic_path} on {target}", file=sys.stderr)

    progress = _Progress()
    try:
        _prepare(args, publisher, topic_path)
        publish(publisher, topic_path, _records(args.input), progress)
    except (OSError, RuntimeError, api_exceptions.GoogleAPIError) as error:
        progress.print(final=True)
        print(f"pubsub_publish: {error}", file=sys.stderr)
        return 1
    finally:
        publisher.stop()

    progress.print(final=True)
    if progress.failed:
        print(
            f"pubsub_publish: {progress.failed} messages failed, first "
            f"error: {progress.first_error}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
