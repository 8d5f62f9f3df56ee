"""Training with `python -m models train` from an offset range of a topic.

Each test publishes simulated history to the broker of scripts/kafka.sh,
trains from Kafka and compares the model with one trained from the same
records in an Avro file.
"""

import dataclasses
import logging
import time

import pytest

from devices.kafka_publish import encode_message
from devices.simulator import SimulationConfig, simulate, write_simulation
from models import registry
from models.__main__ import main
from schemas import read_container

# Each command computes the feature rows of its history.
pytestmark = [pytest.mark.kafka, pytest.mark.slow]

_HISTORY_PATIENTS = 6
# The simulator numbers patients from 0, so a larger simulation adds
# patients that the history does not contain.
_OTHER_PATIENTS = 10
_SIMULATION = SimulationConfig(
    n_patients=_HISTORY_PATIENTS,
    duration_s=900.0,
    batch_size=30,
    # Recent event times keep the broker's time-based retention (7 days by
    # default) from deleting the test messages.
    start_epoch_ms=int(time.time() * 1000) - 3_600_000,
    sensor_off_probability=0.0,
    motion_artifact_probability=0.0,
    duplicate_fraction=0.0,
    out_of_order_fraction=0.0,
    late_device_fraction=0.0,
    clock_skew_device_fraction=0.0,
    invalid_fraction=0.0,
)
# Payloads that `schemas.decode_payload` rejects, with their reason.
_BAD_PAYLOADS = {
    "empty": b"",
    "unknown_framing": b"\x7fnot avro",
    "unknown_schema": b"\xc3\x01" + bytes(8) + b"\x02",
}
# Metadata that two models trained on the same rows must share.
_SAME_MODEL_KEYS = (
    "training_rows",
    "feature_medians",
    "feature_scales",
    "feature_statistics",
    "training_score_quantiles",
    "threshold",
)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Return the history's Avro file and its records."""
    folder = tmp_path_factory.mktemp("kafka-history")
    paths = write_simulation(simulate(dataclasses.replace(_SIMULATION)), folder)
    return str(paths["records"]), list(read_container(paths["records"]))


@pytest.fixture(scope="module")
def other_records():
    """Return records of patients that the history does not contain."""
    config = dataclasses.replace(
        _SIMULATION, n_patients=_OTHER_PATIENTS, seed=7
    )
    history_ids = {f"sim-p{index:03d}" for index in range(_HISTORY_PATIENTS)}
    records = simulate(config).records()
    others = [r for r in records if r["patient_id"] not in history_ids]
    assert others, "the other simulation adds no patient"
    return others


def _messages(partition: int, records):
    for record in records:
        key, payload, timestamp_ms = encode_message(record)
        yield partition, key.encode(), payload, timestamp_ms


def _bad_messages(partition: int, timestamp_ms: int):
    for payload in _BAD_PAYLOADS.values():
        yield partition, b"bad", payload, timestamp_ms


def _train(root, *source_args):
    return main(
        ["train", "--registry", str(root), "--n_estimators", "50"]
        + list(source_args)
    )


def _files_model(tmp_path, history_file):
    root = tmp_path / "files"
    assert _train(root, "--input", history_file) == 0
    return registry.read_metadata(str(root), 1)


def _kafka_model(tmp_path, broker, topic, *offset_args):
    root = tmp_path / "kafka"
    args = ["--kafka_topic", topic, "--kafka_bootstrap", broker.bootstrap]
    assert _train(root, *args, *offset_args) == 0
    return registry.read_metadata(str(root), 1)


def _assert_same_model(kafka_metadata, files_metadata):
    for key in _SAME_MODEL_KEYS:
        assert kafka_metadata[key] == files_metadata[key], key
    kafka_window = dict(kafka_metadata["data_window"])
    files_window = dict(files_metadata["data_window"])
    assert kafka_window.pop("source")["kind"] == "kafka"
    assert files_window.pop("source")["kind"] == "files"
    assert kafka_window == files_window


def test_offset_range_reads_only_range(
    tmp_path, kafka_broker, new_topic, produce, history, other_records
):
    history_file, records = history
    by_patient = sorted({r["patient_id"] for r in records})
    first_half = set(by_patient[: len(by_patient) // 2])
    part0 = [r for r in records if r["patient_id"] in first_half]
    part1 = [r for r in records if r["patient_id"] not in first_half]
    topic = new_topic(partitions=2)
    # Other patients sit before the range in partition 0 and after it in
    # partition 1, so reading past either bound adds messages, and reading
    # all of them adds rows.
    produce(topic, _messages(0, other_records))
    produce(topic, _messages(0, part0))
    produce(topic, _messages(1, part1))
    produce(topic, _messages(1, other_records))
    start0 = len(other_records)
    offsets = f"0:{start0}-end,1:0-{len(part1)}"

    kafka_metadata = _kafka_model(
        tmp_path, kafka_broker, topic, "--kafka_offsets", offsets
    )
    files_metadata = _files_model(tmp_path, history_file)

    _assert_same_model(kafka_metadata, files_metadata)
    source = kafka_metadata["data_window"]["source"]
    assert source["topic"] == topic
    assert source["offset_ranges"] == [
        {
            "partition": 0,
            "start_offset": start0,
            "stop_offset": start0 + len(part0),
        },
        {"partition": 1, "start_offset": 0, "stop_offset": len(part1)},
    ]
    assert source["messages"] == len(records)
    assert source["skipped"] == {}


def test_bad_payloads_skipped_and_counted(
    tmp_path, kafka_broker, new_topic, produce, history, caplog
):
    history_file, records = history
    topic = new_topic(partitions=1)
    middle = len(records) // 2
    _, _, timestamp_ms = encode_message(records[middle])
    produce(topic, _messages(0, records[:middle]))
    produce(topic, _bad_messages(0, timestamp_ms))
    produce(topic, _messages(0, records[middle:]))

    with caplog.at_level(logging.INFO):
        kafka_metadata = _kafka_model(tmp_path, kafka_broker, topic)
    files_metadata = _files_model(tmp_path, history_file)

    _assert_same_model(kafka_metadata, files_metadata)
    source = kafka_metadata["data_window"]["source"]
    assert source["offset_ranges"] == [
        {
            "partition": 0,
            "start_offset": 0,
            "stop_offset": len(records) + len(_BAD_PAYLOADS),
        }
    ]
    assert source["records"] == len(records)
    assert source["skipped"] == {reason: 1 for reason in _BAD_PAYLOADS}
    summaries = [m for m in caplog.messages if "skipped (" in m]
    assert len(summaries) == 1
    assert "empty=1, unknown_framing=1, unknown_schema=1" in summaries[0]
    assert all("sim-p" not in m for m in caplog.messages)


def test_range_past_end_rejected(
    tmp_path, kafka_broker, new_topic, produce, history, caplog
):
    _, records = history
    topic = new_topic(partitions=1)
    produce(topic, _messages(0, records[:10]))
    args = [
        "--kafka_topic",
        topic,
        "--kafka_bootstrap",
        kafka_broker.bootstrap,
        "--kafka_offsets",
        "0:0-11",
    ]
    assert _train(tmp_path, *args) == 1
    assert "offset range 0:0-11 ends after the current end offset" in (
        caplog.text
    )
    assert f"retained offsets of {topic}/0 are 0-10" in caplog.text
    assert registry.versions(str(tmp_path)) == []


def test_missing_partition_rejected(tmp_path, kafka_broker, new_topic, caplog):
    topic = new_topic(partitions=1)
    args = [
        "--kafka_topic",
        topic,
        "--kafka_bootstrap",
        kafka_broker.bootstrap,
        "--kafka_offsets",
        "3:0-5",
    ]
    assert _train(tmp_path, *args) == 1
    assert f"partition 3 not found in topic {topic!r}" in caplog.text


def test_empty_range_has_no_rows(tmp_path, kafka_broker, new_topic, caplog):
    topic = new_topic(partitions=1)
    args = ["--kafka_topic", topic, "--kafka_bootstrap", kafka_broker.bootstrap]
    assert _train(tmp_path, *args) == 1
    assert "no training rows" in caplog.text
