"""Tests of the Avro schemas, framings and schema evolution."""

import io
import struct

import fastavro
import pytest

from schemas import (
    ALERT,
    VITAL_BATCH,
    VITAL_READING,
    DecodeError,
    decode_payload,
    decode_record,
    encode_record,
    epoch_ms,
    load_schema,
)
from tests.core.helpers import T0_MS, alert_record, batch_record

READING = {
    "patient_id": "p-1",
    "device_id": "d-1",
    "sequence": 7,
    "event_time": T0_MS,
    "heart_rate_bpm": 72.0,
    "spo2_pct": 97.0,
    "rr_interval_ms": 833.0,
    "signal_quality": 0.9,
}


def _epoch_ms(value):
    return int(value.timestamp() * 1000)


def test_reading_round_trip():
    kind, record = decode_payload(encode_record(VITAL_READING, READING))
    assert kind == VITAL_READING
    assert record["sequence"] == 7
    assert _epoch_ms(record["event_time"]) == T0_MS
    assert record["heart_rate_bpm"] == pytest.approx(72.0)


def test_batch_round_trip():
    kind, record = decode_payload(
        encode_record(VITAL_BATCH, batch_record("p", 0))
    )
    assert kind == VITAL_BATCH
    assert len(record["heart_rate_bpm"]) == 60
    assert record["pulse_rate_bpm"] == []


def test_new_reader_reads_old_writer():
    old = load_schema(VITAL_READING, history="rev1")
    payload = encode_record(VITAL_READING, READING, schema=old)
    kind, record = decode_payload(payload)
    assert kind == VITAL_READING
    assert record["pulse_rate_bpm"] is None
    assert record["rr_rmssd_ms"] is None
    assert record["firmware"] == ""


def test_every_added_field_has_default():
    old = {f["name"] for f in load_schema(VITAL_READING, "rev1")["fields"]}
    for field in load_schema(VITAL_READING)["fields"]:
        if field["name"] not in old:
            assert "default" in field, field["name"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty"),
        (b"\x7fgarbage bytes", "unknown_framing"),
        (b"\xc3\x01\x00\x01", "truncated"),
        (b"\xc3\x01" + bytes(8) + b"\x02", "unknown_schema"),
        (b"\x00\x00\x00\x00\x05", "unknown_schema"),
    ],
)
def test_bad_payload_reason(payload, reason):
    with pytest.raises(DecodeError) as raised:
        decode_payload(payload)
    assert raised.value.reason == reason


def test_truncated_record_rejected():
    payload = encode_record(VITAL_READING, READING)
    with pytest.raises(DecodeError) as raised:
        decode_payload(payload[:-6])
    assert raised.value.reason in ("truncated", "undecodable")


def test_record_of_other_schema_rejected():
    # An Alert framed as a single object: a fingerprint no reader accepts.
    alert = load_schema(ALERT)
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out,
        alert,
        {
            "alert_id": "a",
            "patient_id": "p",
            "tier": "INFO",
            "kind": "k",
            "event_time": T0_MS,
            "window_start": T0_MS,
            "reasons": [],
        },
    )
    payload = b"\xc3\x01" + b"\x11" * 8 + out.getvalue()
    with pytest.raises(DecodeError) as raised:
        decode_payload(payload)
    assert raised.value.reason == "unknown_schema"


def test_confluent_payload_resolved():
    writer = load_schema(VITAL_READING)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, READING)
    payload = b"\x00" + struct.pack(">I", 42) + body.getvalue()
    kind, record = decode_payload(payload, {42: writer}.__getitem__)
    assert kind == VITAL_READING
    assert record["sequence"] == 7


def test_confluent_wrong_schema_rejected():
    payload = b"\x00" + struct.pack(">I", 9) + b"\x02"
    with pytest.raises(DecodeError) as raised:
        decode_payload(payload, {9: load_schema(ALERT)}.__getitem__)
    assert raised.value.reason == "wrong_schema"


def test_output_record_round_trip():
    alert = alert_record()
    payload = encode_record(ALERT, alert)
    decoded = decode_record(ALERT, payload)
    assert epoch_ms(decoded.pop("event_time")) == alert.pop("event_time")
    assert epoch_ms(decoded.pop("window_start")) == alert.pop("window_start")
    assert decoded == alert
    with pytest.raises(DecodeError) as raised:
        decode_record(ALERT, encode_record(VITAL_READING, READING))
    assert raised.value.reason == "unknown_schema"
    with pytest.raises(DecodeError) as raised:
        decode_record(ALERT, payload[:-3])
    assert raised.value.reason in ("truncated", "undecodable")
