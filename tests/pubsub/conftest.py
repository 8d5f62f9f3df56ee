"""Fixtures that run the tests in this folder against the Pub/Sub emulator.

The session fixture starts the emulator with scripts/pubsub.sh when it is
not already running, and stops it at the end only if it started it. It
sets PUBSUB_EMULATOR_HOST for the whole session before any test creates a
client, because a client created without it connects to the real service.
"""

import os
import pathlib
import subprocess
import uuid

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]
_SCRIPT = _REPO / "scripts" / "pubsub.sh"
_SCRIPT_TIMEOUT_SEC = 120
_ADMIN_TIMEOUT_SEC = 30
# The emulator accepts any project id, and this one exists nowhere else.
PROJECT = "vitalwatch-local"


def _run_script(*args: str, check: bool) -> int:
    completed = subprocess.run(
        ["bash", str(_SCRIPT), *args],
        check=check,
        timeout=_SCRIPT_TIMEOUT_SEC,
    )
    return completed.returncode


@pytest.fixture(scope="session")
def pubsub_emulator():
    """Start the emulator if needed and yield its host:port."""
    host = f"127.0.0.1:{os.environ.get('PUBSUB_PORT', '8085')}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", host)
        started_here = _run_script("status", check=False) != 0
        if started_here:
            _run_script("start", check=True)
        yield host
        if started_here:
            _run_script("stop", check=True)


@pytest.fixture
def topic_and_subscription(pubsub_emulator):
    """Create a uniquely named topic with one pull subscription.

    Yields:
        (topic path, subscription path). Both are deleted afterwards.
    """
    from google.cloud import pubsub_v1

    name = f"test-{uuid.uuid4().hex[:12]}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, name)
    subscription = subscriber.subscription_path(PROJECT, name)
    publisher.create_topic(name=topic, timeout=_ADMIN_TIMEOUT_SEC)
    subscriber.create_subscription(
        name=subscription, topic=topic, timeout=_ADMIN_TIMEOUT_SEC
    )
    yield topic, subscription
    subscriber.delete_subscription(
        subscription=subscription, timeout=_ADMIN_TIMEOUT_SEC
    )
    publisher.delete_topic(topic=topic, timeout=_ADMIN_TIMEOUT_SEC)
    subscriber.close()
    publisher.stop()
