"""Fixtures that run the tests in this folder against a real Kafka broker.

The session fixture starts the broker with scripts/kafka.sh when it is not
already running, and stops it at the end only if it started it.
"""

import dataclasses
import os
import pathlib
import subprocess
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

_REPO = pathlib.Path(__file__).resolve().parents[2]
_SCRIPT = _REPO / "scripts" / "kafka.sh"
# A cold start downloads Kafka with Maven first.
_START_TIMEOUT_SEC = 600
_ADMIN_TIMEOUT_SEC = 30


@dataclasses.dataclass(frozen=True)
class Broker:
    """Addresses of the local broker and the CA that signed its TLS key."""

    bootstrap: str
    tls_bootstrap: str
    ca_file: str


def _run_script(*args: str, check: bool) -> int:
    completed = subprocess.run(
        ["bash", str(_SCRIPT), *args],
        check=check,
        timeout=_START_TIMEOUT_SEC,
    )
    return completed.returncode


@pytest.fixture(scope="session")
def kafka_broker():
    started_here = _run_script("status", check=False) != 0
    if started_here:
        _run_script("start", check=True)
    yield Broker(
        bootstrap=f"127.0.0.1:{os.environ.get('KAFKA_PORT', '19092')}",
        tls_bootstrap=f"127.0.0.1:{os.environ.get('KAFKA_TLS_PORT', '19093')}",
        ca_file=str(_REPO / ".cache" / "kafka" / "run" / "tls" / "ca.crt"),
    )
    if started_here:
        _run_script("stop", check=True)


@pytest.fixture
def new_topic(kafka_broker):
    """Return a function that creates a uniquely named topic."""
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    created = []

    def create(partitions: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        futures[name].result(timeout=_ADMIN_TIMEOUT_SEC)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=_ADMIN_TIMEOUT_SEC)


@pytest.fixture
def produce(kafka_broker):
    """Return a function that produces messages to the plaintext listener."""
    return lambda topic, messages: _produce(
        kafka_broker.bootstrap, topic, messages
    )


def _produce(bootstrap: str, topic: str, messages) -> None:
    """Produce ``(partition, key, value, timestamp_ms)`` tuples and flush."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}
    )
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)

    for partition, key, value, timestamp_ms in messages:
        producer.produce(
            topic,
            value=value,
            key=key,
            partition=partition,
            timestamp=timestamp_ms,
            on_delivery=on_delivery,
        )
    assert producer.flush(_ADMIN_TIMEOUT_SEC) == 0, "messages not flushed"
    assert errors == [], f"delivery failed: {errors[0]}"
