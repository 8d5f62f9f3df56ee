"""Tests of the parts of transforms.kafka_io that need no broker.

No schema registry server is available in this environment, so the
ConfluentSchemaResolver tests use a fake client object that implements
``get_schema()`` the way confluent_kafka's SchemaRegistryClient does.
"""

import io
import json
import logging
import pathlib
import struct

import apache_beam as beam
import fastavro
import pytest
from apache_beam.internal import pickler
from confluent_kafka.schema_registry.error import SchemaRegistryError

import schemas
from schemas import VITAL_READING, DecodeError, decode_payload
from schemas.codec import load_schema
from transforms.kafka_io import (
    ConfluentSchemaResolver,
    ReadVitalsFromKafka,
)

_AVRO_DIR = pathlib.Path(schemas.__file__).parent / "avro"
_READING_SCHEMA_ID = 7
_ALERT_SCHEMA_ID = 8
_PROTOBUF_SCHEMA_ID = 9


class _RegisteredSchema:
    def __init__(self, schema_str, schema_type="AVRO"):
        self.schema_str = schema_str
        self.schema_type = schema_type


class _FakeRegistryClient:
    """Fake SchemaRegistryClient that counts get_schema() calls."""

    def __init__(self):
        reading = (_AVRO_DIR / "vital_reading.avsc").read_text()
        self.schemas = {
            _READING_SCHEMA_ID: _RegisteredSchema(reading),
            _ALERT_SCHEMA_ID: _RegisteredSchema(
                json.dumps({"type": "record", "name": "x.Other", "fields": []})
            ),
            _PROTOBUF_SCHEMA_ID: _RegisteredSchema(
                "syntax = 'proto3';", "PROTOBUF"
            ),
        }
        self.calls = 0

    def get_schema(self, schema_id):
        self.calls += 1
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return self.schemas[schema_id]


def _confluent_payload(schema_id: int, record: dict) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, load_schema(VITAL_READING), record)
    return b"\x00" + struct.pack(">I", schema_id) + body.getvalue()


def _reading() -> dict:
    return {
        "patient_id": "p-1",
        "device_id": "d-1",
        "sequence": 3,
        "event_time": 1_735_689_600_000,
        "signal_quality": 0.5,
    }


def test_resolver_decodes_confluent_payload():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)

    kind, record = decode_payload(
        _confluent_payload(_READING_SCHEMA_ID, _reading()), resolver
    )

    assert kind == VITAL_READING
    assert record["sequence"] == 3


def test_resolver_caches_schemas():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)

    first = resolver(_READING_SCHEMA_ID)
    second = resolver(_READING_SCHEMA_ID)

    assert first is second
    assert client.calls == 1


def test_resolver_unknown_id_is_key_error():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)

    with pytest.raises(DecodeError) as caught:
        decode_payload(_confluent_payload(99, _reading()), resolver)

    assert caught.value.reason == "unknown_schema"
    resolver_calls_before = client.calls
    with pytest.raises(KeyError):
        resolver(99)
    assert client.calls == resolver_calls_before + 1


def test_resolver_rejects_non_avro_schema():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)

    with pytest.raises(KeyError):
        resolver(_PROTOBUF_SCHEMA_ID)


def test_resolver_wrong_record_is_dead_lettered():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)

    with pytest.raises(DecodeError) as caught:
        decode_payload(
            _confluent_payload(_ALERT_SCHEMA_ID, _reading()), resolver
        )

    assert caught.value.reason == "wrong_schema"


def test_resolver_reraises_registry_outage():
    class _Unavailable:
        def get_schema(self, schema_id):
            raise SchemaRegistryError(503, -1, "Service Unavailable")

    resolver = ConfluentSchemaResolver(client_factory=_Unavailable)

    with pytest.raises(SchemaRegistryError):
        resolver(_READING_SCHEMA_ID)


def test_resolver_pickles_without_client():
    client = _FakeRegistryClient()
    resolver = ConfluentSchemaResolver(client_factory=lambda: client)
    resolver(_READING_SCHEMA_ID)

    restored = pickler.loads(pickler.dumps(resolver))

    assert restored._client is None
    assert restored._schemas == {}


def test_resolver_needs_exactly_one_source():
    with pytest.raises(ValueError):
        ConfluentSchemaResolver()
    with pytest.raises(ValueError):
        ConfluentSchemaResolver({"url": "http://127.0.0.1:1"}, lambda: None)


def test_read_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="topic"):
        ReadVitalsFromKafka([], "127.0.0.1:1", "g")
    with pytest.raises(ValueError, match="topic"):
        ReadVitalsFromKafka("", "127.0.0.1:1", "g")
    with pytest.raises(ValueError, match="start_offset"):
        ReadVitalsFromKafka(["t"], "127.0.0.1:1", "g", start_offset="middle")
    with pytest.raises(ValueError, match="max_read_sec"):
        ReadVitalsFromKafka(["t"], "127.0.0.1:1", "g", max_read_sec=0)


def test_kafka_config_values_not_logged(caplog):
    secret = "s3cret-password-value"
    pipeline = beam.Pipeline()

    # Applying the transform logs the configuration. The pipeline never runs.
    with caplog.at_level(logging.DEBUG, logger="transforms.kafka_io"):
        _ = pipeline | "Read" >> ReadVitalsFromKafka(
            topic="vitals",
            bootstrap_servers="127.0.0.1:19092",
            group_id="secrets",
            config={"sasl.password": secret},
        )

    assert "Reading Kafka topics" in caplog.text
    assert secret not in caplog.text
