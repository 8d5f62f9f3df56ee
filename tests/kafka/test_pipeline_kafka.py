"""The vitals pipeline from Kafka to Kafka on the FnApiRunner.

A real recording (CinC 2015 t430s, a true extreme-tachycardia alarm) is
published one reading per message, with a poison message, and read back
with a bounded Kafka read. The alerts topic must hold the SEVERE
tachycardia alert and the dead-letter topic the poison with its reason.
"""

import uuid

import pytest

from pipelines.vitals_pipeline import build_pipeline
from tests.core.helpers import batch_pipeline
from tests.flink import vitals_job

pytestmark = pytest.mark.kafka


@pytest.fixture
def replay():
    try:
        return vitals_job.replay_t430s(vitals_job.start_ahead_of_now())
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")


def test_recording_to_alerts_topic(kafka_broker, replay):
    bootstrap = kafka_broker.bootstrap
    prefix = f"pipe-{uuid.uuid4().hex[:8]}"
    topics = vitals_job.create_topics(
        bootstrap, prefix, ["vitals", "alerts", "dead-letters"]
    )
    try:
        vitals_job.publish_readings(
            bootstrap, topics["vitals"], replay.readings
        )
        vitals_job.publish_poison(
            bootstrap, topics["vitals"], replay.start_epoch_ms
        )
        pipeline = batch_pipeline(
            f"--source=kafka:{topics['vitals']}",
            f"--kafka_bootstrap={bootstrap}",
            f"--kafka_group={prefix}",
            "--kafka_bounded=true",
            f"--alerts_topic={topics['alerts']}",
            f"--dead_letter_topic={topics['dead-letters']}",
            "--max_future_skew_sec=7200",
        )
        build_pipeline(pipeline, pipeline.options)
        pipeline.run().wait_until_finish()
        alerts = vitals_job.read_alerts(bootstrap, topics["alerts"])
        letters = vitals_job.read_dead_letters(
            bootstrap, topics["dead-letters"]
        )
    finally:
        vitals_job.delete_topics(bootstrap, topics)
    severe = [a for a in alerts if a["tier"] == "SEVERE"]
    assert [a["kind"] for a in severe] == ["tachycardia"]
    event_time_ms = int(severe[0]["event_time"].timestamp() * 1000)
    assert 240 <= replay.offset_sec(event_time_ms) <= 300
    assert [d["reason"] for d in letters] == ["unknown_framing"]
