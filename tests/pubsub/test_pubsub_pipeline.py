"""Tests of the Pub/Sub publisher and the pipeline's pubsub: source.

They run against the emulator of scripts/pubsub.sh. The pipeline test runs
the real streaming graph on the BundleBasedDirectRunner, whose Pub/Sub
reader pulls from the emulator because PUBSUB_EMULATOR_HOST is set. A
streaming pipeline never finishes by itself, so the test polls what the
pipeline writes to a file and cancels it.
"""

import json
import threading
import time

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from google.cloud import pubsub_v1

from devices import pubsub_publish
from pipelines.vitals_pipeline import build_pipeline
from schemas import VITAL_BATCH, decode_payload, write_container
from tests.core.helpers import batch_record
from tests.pubsub.conftest import PROJECT

pytestmark = pytest.mark.pubsub

_TACHYCARDIA_PATIENT = "pubsub-tachy"
_CALM_PATIENT = "pubsub-calm"
_MINUTES = 3
_READINGS_PER_MINUTE = 60
_GARBAGE = b"not an Avro payload"
# A cold start of the runner and the first pulls take a few seconds; the
# rest of the budget is for a slow CI machine.
_PIPELINE_TIMEOUT_SEC = 120
_POLL_INTERVAL_SEC = 0.5
_PULL_TIMEOUT_SEC = 10


def _minute_records(start_ms: int) -> list[dict]:
    """Build _MINUTES one-minute batches for two patients from `start_ms`.

    The tachycardia patient's last minute contains 15 s at 160 bpm, longer
    than the 17 beats the fast-path check needs.
    """
    records = []
    for patient in (_TACHYCARDIA_PATIENT, _CALM_PATIENT):
        for minute in range(_MINUTES):
            heart_rate = np.full(_READINGS_PER_MINUTE, 70.0)
            if patient == _TACHYCARDIA_PATIENT and minute == _MINUTES - 1:
                heart_rate[20:35] = 160.0
            record = batch_record(patient, minute, heart_rate=heart_rate)
            record["start_time"] = start_ms + minute * 60_000
            records.append(record)
    return records


def _recent_start_ms() -> int:
    """Start the batches _MINUTES before the current minute.

    Event times near the wall clock matter because the direct runner's
    Pub/Sub watermark is the wall clock, and readings further behind it
    than the windows' allowed lateness are dead-lettered as late.
    """
    return (int(time.time()) // 60 - _MINUTES) * 60_000


def _short_name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _publish_file(tmp_path, topic: str, records: list[dict]) -> int:
    avro_path = tmp_path / "vitals.avro"
    write_container(avro_path, VITAL_BATCH, records)
    return pubsub_publish.main(
        [
            "--project",
            PROJECT,
            "--topic",
            _short_name(topic),
            "--input",
            str(avro_path),
        ]
    )


def _pull_all(subscription: str, expected: int) -> list:
    """Pull and acknowledge until `expected` messages arrived or time out."""
    messages = []
    deadline = time.monotonic() + _PULL_TIMEOUT_SEC
    with pubsub_v1.SubscriberClient() as subscriber:
        while len(messages) < expected and time.monotonic() < deadline:
            response = subscriber.pull(
                subscription=subscription,
                max_messages=expected,
                timeout=_PULL_TIMEOUT_SEC,
            )
            received = response.received_messages
            if received:
                subscriber.acknowledge(
                    subscription=subscription,
                    ack_ids=[m.ack_id for m in received],
                )
            messages.extend(m.message for m in received)
    return messages


def test_publisher_sends_each_record(pubsub_emulator, tmp_path):
    records = _minute_records(_recent_start_ms())
    topic_name = f"publish-{time.time_ns()}"
    subscription_name = f"{topic_name}-sub"
    avro_path = tmp_path / "vitals.avro"
    write_container(avro_path, VITAL_BATCH, records)

    status = pubsub_publish.main(
        [
            "--project",
            PROJECT,
            "--topic",
            topic_name,
            "--create-subscription",
            subscription_name,
            "--input",
            str(avro_path),
        ]
    )
    assert status == 0
    subscription = f"projects/{PROJECT}/subscriptions/{subscription_name}"
    messages = _pull_all(subscription, len(records))

    assert len(messages) == len(records)
    decoded = sorted(
        (decode_payload(m.data)[1] for m in messages),
        key=lambda r: (r["patient_id"], r["first_sequence"]),
    )
    expected = sorted(
        records, key=lambda r: (r["patient_id"], r["first_sequence"])
    )
    assert [r["patient_id"] for r in decoded] == [
        r["patient_id"] for r in expected
    ]
    assert [r["heart_rate_bpm"] for r in decoded] == [
        r["heart_rate_bpm"] for r in expected
    ]
    event_times = sorted(
        int(m.attributes[pubsub_publish.EVENT_TIME_ATTRIBUTE]) for m in messages
    )
    assert event_times == sorted(r["start_time"] for r in records)


def test_publisher_rejects_run_without_emulator(monkeypatch, tmp_path):
    monkeypatch.delenv(pubsub_publish.EMULATOR_HOST_ENV, raising=False)

    def fail_if_called(*args, **kwargs):
        raise AssertionError("a Pub/Sub client was created")

    monkeypatch.setattr(pubsub_v1, "PublisherClient", fail_if_called)
    status = pubsub_publish.main(["--input", str(tmp_path / "none.avro")])
    assert status == 2


def _describe_alert(alert: dict) -> dict:
    return {
        "patient_id": alert["patient_id"],
        "kind": alert["kind"],
        "tier": alert["tier"],
    }


def _describe_dead_letter(dead_letter: dict) -> dict:
    return {"reason": dead_letter["reason"], "source": dead_letter["source"]}


def _describe_block(block) -> dict:
    return {"readings": len(block)}


def _append_line(element, path: str, stream: str, describe) -> None:
    line = json.dumps({"stream": stream, **describe(element)}) + "\n"
    # One write call per line, so lines from parallel bundles never mix.
    with open(path, "a") as out:
        out.write(line)


def _start_pipeline(subscription: str, observed_path):
    """Build the vitals graph on the subscription and start it."""
    options = PipelineOptions(
        ["--streaming", f"--source=pubsub:{subscription}"]
    )
    pipeline = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
    model = beam.pvalue.AsSingleton(pipeline | "NoModel" >> beam.Create([None]))
    outputs = build_pipeline(pipeline, options, model=model)
    path = str(observed_path)
    for label, name, describe in (
        ("ObserveAlerts", "alerts", _describe_alert),
        ("ObserveDeadLetters", "dead_letters", _describe_dead_letter),
        ("ObserveBlocks", "blocks", _describe_block),
    ):
        outputs[name] | label >> beam.Map(_append_line, path, name, describe)
    return pipeline.run()


class _FailureWatch:
    """Wait for the pipeline in a daemon thread and keep any error it raises.

    A streaming pipeline only returns from wait_until_finish() when it
    fails, so this turns a crash into a test failure instead of a timeout.
    """

    def __init__(self, result):
        self.error: Exception | None = None
        self._result = result
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self):
        try:
            self._result.wait_until_finish()
        except Exception as error:
            self.error = error


def _read_observed(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _done(observed: list[dict], expected_readings: int) -> bool:
    readings = sum(o["readings"] for o in observed if o["stream"] == "blocks")
    has_alert = any(
        o["stream"] == "alerts" and o["kind"] == "tachycardia" for o in observed
    )
    has_dead_letter = any(o["stream"] == "dead_letters" for o in observed)
    return readings >= expected_readings and has_alert and has_dead_letter


def _wait_for_outputs(path, watch, expected_readings) -> list[dict]:
    deadline = time.monotonic() + _PIPELINE_TIMEOUT_SEC
    while time.monotonic() < deadline:
        if watch.error is not None:
            raise AssertionError("the pipeline failed") from watch.error
        observed = _read_observed(path)
        if _done(observed, expected_readings):
            return observed
        time.sleep(_POLL_INTERVAL_SEC)
    return _read_observed(path)


def test_pipeline_alerts_from_subscription(topic_and_subscription, tmp_path):
    topic, subscription = topic_and_subscription
    records = _minute_records(_recent_start_ms())
    expected_readings = len(records) * _READINGS_PER_MINUTE
    observed_path = tmp_path / "observed.jsonl"

    started = time.monotonic()
    result = _start_pipeline(subscription, observed_path)
    try:
        watch = _FailureWatch(result)
        assert _publish_file(tmp_path, topic, records) == 0
        with pubsub_v1.PublisherClient() as publisher:
            publisher.publish(topic, _GARBAGE).result(timeout=30)
        observed = _wait_for_outputs(observed_path, watch, expected_readings)
    finally:
        result.cancel()
    elapsed = time.monotonic() - started

    readings = sum(o["readings"] for o in observed if o["stream"] == "blocks")
    assert readings == expected_readings, f"after {elapsed:.0f} s"
    dead_letters = [o for o in observed if o["stream"] == "dead_letters"]
    assert dead_letters == [
        {
            "stream": "dead_letters",
            "reason": "unknown_framing",
            "source": "pubsub",
        }
    ]
    # Device-silent notices follow the wall clock a minute after the last
    # reading, so whether one arrived before the cancel is left open.
    alerts = [
        (o["patient_id"], o["kind"], o["tier"])
        for o in observed
        if o["stream"] == "alerts" and o["kind"] != "device_silent"
    ]
    assert alerts == [(_TACHYCARDIA_PATIENT, "tachycardia", "SEVERE")]
