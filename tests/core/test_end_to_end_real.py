"""End to end over real CinC 2015 recordings: replay, pipeline, alerts.

t430s is a true extreme-tachycardia alarm and t504s a false one, as
judged by the challenge's expert annotators. The pipeline must raise a
SEVERE tachycardia alert on the first, near the alarm at 300 s, and no
SEVERE alert on the second. No model is promoted, so these alerts come
from the fast path alone.
"""

import json

import apache_beam as beam
import pytest

from devices import edge_replay, labels
from pipelines.vitals_pipeline import build_pipeline
from tests.core.helpers import batch_pipeline

_RECORDS = ("t430s", "t504s")


@pytest.fixture(scope="module")
def alerts(tmp_path_factory):
    try:
        data_dir = labels.resolve_data_dir()
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")
    folder = tmp_path_factory.mktemp("replay")
    for recording in labels.list_recordings(data_dir, (labels.CINC2015,)):
        if recording.name in _RECORDS:
            result = edge_replay.replay_record(recording)
            edge_replay.write_replay(result, folder)
    out = tmp_path_factory.mktemp("run")
    pipeline = batch_pipeline(
        f"--source=avro:{folder}/*.batches.avro", f"--output_dir={out}"
    )
    model = beam.pvalue.AsSingleton(pipeline | beam.Create([None]))
    build_pipeline(pipeline, pipeline.options, model=model)
    pipeline.run().wait_until_finish()
    with open(out / "alerts.jsonl") as lines:
        return [json.loads(line) for line in lines]


def _offset_s(alert):
    return (alert["event_time"] - edge_replay.DEFAULT_START_EPOCH_MS) / 1000


def test_true_tachycardia_alarm_caught(alerts):
    severe = [
        a
        for a in alerts
        if a["patient_id"] == "rec-cinc2015-t430s" and a["tier"] == "SEVERE"
    ]
    assert [a["kind"] for a in severe] == ["tachycardia"]
    assert 240 <= _offset_s(severe[0]) <= 300
    assert "above 140 bpm" in severe[0]["reasons"][0]["text"]


def test_false_tachycardia_alarm_quiet(alerts):
    severe = [
        a
        for a in alerts
        if a["patient_id"] == "rec-cinc2015-t504s" and a["tier"] == "SEVERE"
    ]
    assert severe == []


def test_alerts_match_schema(alerts):
    import fastavro

    from schemas import ALERT, load_schema

    for alert in alerts:
        assert fastavro.validate(alert, load_schema(ALERT))
