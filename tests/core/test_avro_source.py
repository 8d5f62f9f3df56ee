"""Avro files as a source: damaged and foreign files end in dead letters.

One bad file among good ones must not fail the run or lose the good
files' readings, and every dead letter must name the file it came from.
"""

import json

import fastavro
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import summary
from pipelines.vitals_pipeline import build_pipeline
from schemas import (
    ALERT,
    VITAL_BATCH,
    VITAL_READING,
    load_schema,
    write_container,
)
from tests.core.helpers import (
    T0_MS,
    alert_record,
    batch_pipeline,
    batch_record,
)


def _run(folder, output):
    flags = [f"--source=avro:{folder}/*.avro", f"--output_dir={output}"]
    pipeline = batch_pipeline(*flags)
    build_pipeline(pipeline, PipelineOptions(flags))
    result = pipeline.run()
    result.wait_until_finish()
    with open(output / "dead_letters.jsonl") as lines:
        letters = [json.loads(line) for line in lines]
    return summary.counters(result), letters


def _good(folder, name="good.avro", minutes=3):
    records = [batch_record("p1", minute) for minute in range(minutes)]
    write_container(folder / name, VITAL_BATCH, records)


def _truncated(folder):
    records = [batch_record("p2", minute) for minute in range(40)]
    whole = folder / "whole.tmp"
    with open(whole, "wb") as out:
        # One uncompressed block per record (sync_interval=1), so the
        # records before the cut stay readable.
        fastavro.writer(out, load_schema(VITAL_BATCH), records, sync_interval=1)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "truncated.avro").write_bytes(data[: len(data) * 3 // 4])


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


def test_truncated_file_keeps_good_files(inputs, tmp_path):
    _good(inputs)
    _truncated(inputs)
    counters, letters = _run(inputs, tmp_path / "out")
    unreadable = [x for x in letters if x["reason"] == "unreadable_file"]
    assert len(unreadable) == 1
    assert unreadable[0]["source"].endswith("truncated.avro")
    assert "truncated.avro" in unreadable[0]["detail"]
    assert counters["files_unreadable"] == 1
    # The good file's 180 readings and the records before the cut.
    assert counters["readings_valid"] > 180


def test_empty_file_is_a_dead_letter(inputs, tmp_path):
    _good(inputs)
    (inputs / "empty.avro").write_bytes(b"")
    counters, letters = _run(inputs, tmp_path / "out")
    assert [x["reason"] for x in letters] == ["unreadable_file"]
    assert letters[0]["source"].endswith("empty.avro")
    assert counters["readings_valid"] == 180


def test_foreign_schema_records_dead_lettered(inputs, tmp_path):
    _good(inputs)
    alert = alert_record()
    write_container(inputs / "alerts.avro", ALERT, [alert, alert])
    counters, letters = _run(inputs, tmp_path / "out")
    assert [x["reason"] for x in letters] == ["unknown_schema"] * 2
    assert all(x["source"].endswith("alerts.avro") for x in letters)
    assert all(x["payload"] for x in letters)
    assert counters["readings_valid"] == 180


def test_older_schema_file_is_read(inputs, tmp_path):
    old = load_schema(VITAL_READING, history="rev1")
    names = {field["name"] for field in old["fields"]}
    reading = {
        "patient_id": "p3",
        "device_id": "dev-p3",
        "sequence": 1,
        "event_time": T0_MS,
        "heart_rate_bpm": 70.0,
        "spo2_pct": 97.0,
        "rr_interval_ms": 850.0,
        "signal_quality": 0.9,
    }
    with open(inputs / "old.avro", "wb") as out:
        fastavro.writer(
            out, old, [{k: v for k, v in reading.items() if k in names}]
        )
    counters, letters = _run(inputs, tmp_path / "out")
    assert letters == []
    assert counters["readings_valid"] == 1
