"""Encode and decode vitalwatch records as Avro payloads and container files.

Two framings are accepted for single-record payloads:

* Avro single-object encoding: the bytes ``C3 01``, the schema's 8-byte
  CRC-64-AVRO fingerprint (little-endian), then the binary record. The
  fingerprint picks the writer schema among the current and historical
  schemas, and the record is resolved against the current reader schema.
* The Confluent wire format: a zero byte, a 4-byte big-endian schema id,
  then the binary record. The caller supplies a resolver from schema id to
  writer schema (a schema-registry client in production).

Schema evolution rule: a new version may only add fields that have a
default, or widen a type in a way Avro resolution allows. Fields are never
renamed or removed. The previous version is kept in ``avro/history/`` so
that tests prove a current reader still reads the old writer's records.
"""

import datetime
import functools
import io
import json
import pathlib
import struct
from collections.abc import Callable, Iterable, Iterator

import fastavro
import fastavro.schema

VITAL_READING = "vital_reading"
VITAL_BATCH = "vital_batch"
ALERT = "alert"
DEAD_LETTER = "dead_letter"

_AVRO_DIR = pathlib.Path(__file__).resolve().parent / "avro"
_SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_CONFLUENT_MAGIC = 0
_FINGERPRINT_BYTES = 8
_CONFLUENT_HEADER_BYTES = 5
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# A resolver maps a Confluent schema id to the writer's parsed schema, or
# raises KeyError when the registry does not know the id.
SchemaResolver = Callable[[int], dict]


class DecodeError(ValueError):
    """A payload that cannot be decoded into a vitalwatch record.

    Attributes:
        reason: Machine-readable reason code for the dead-letter record.
        detail: Human-readable detail; never contains a field value that
            could identify a patient.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@functools.cache
def load_schema(name: str, history: str | None = None) -> dict:
    """Load and parse a schema by file stem, from ``avro/`` or its history.

    Args:
        name: File stem, for example ``"vital_reading"``.
        history: Version tag of an old schema in ``avro/history/``, such as
            ``"rev1"``; None for the current schema.

    Returns:
        The schema parsed by fastavro, with named types resolved.
    """
    if history is None:
        path = _AVRO_DIR / f"{name}.avsc"
    else:
        path = _AVRO_DIR / "history" / f"{name}_{history}.avsc"
    return fastavro.parse_schema(json.loads(path.read_text()))


def _fingerprint(schema: dict) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


@functools.cache
def _current_fingerprint(kind: str) -> bytes:
    # Computing a fingerprint costs milliseconds; encoding costs micros.
    return _fingerprint(load_schema(kind))


@functools.cache
def _writer_schemas() -> dict[bytes, tuple[str, dict]]:
    """Map each known writer fingerprint to (record kind, writer schema)."""
    known = {}
    for kind in (VITAL_READING, VITAL_BATCH):
        known[_fingerprint(load_schema(kind))] = (kind, load_schema(kind))
        for old in sorted((_AVRO_DIR / "history").glob(f"{kind}_rev*.avsc")):
            tag = old.stem.rsplit("_", 1)[1]
            writer = load_schema(kind, history=tag)
            known[_fingerprint(writer)] = (kind, writer)
    return known


def _kind_of(writer: dict) -> str | None:
    name = writer.get("name", "")
    return {
        "vitalwatch.v1.VitalReading": VITAL_READING,
        "vitalwatch.v1.VitalBatch": VITAL_BATCH,
    }.get(name)


def encode_record(kind: str, record: dict, schema: dict | None = None) -> bytes:
    """Encode one record with Avro single-object encoding.

    Args:
        kind: ``VITAL_READING`` or ``VITAL_BATCH``.
        record: The record as a dict.
        schema: Writer schema; the current schema of ``kind`` when None.
            Tests pass an old schema to act as an old device.

    Returns:
        The framed payload.
    """
    if schema is None:
        writer, fingerprint = load_schema(kind), _current_fingerprint(kind)
    else:
        writer, fingerprint = schema, _fingerprint(schema)
    out = io.BytesIO()
    out.write(_SINGLE_OBJECT_MAGIC)
    out.write(fingerprint)
    fastavro.schemaless_writer(out, writer, record)
    return out.getvalue()


def record_encoder(schema: dict) -> Callable[[dict], bytes]:
    """Return a function that single-object encodes records of `schema`.

    The fingerprint is computed once, so this suits many records written
    with one schema, such as those of an Avro container file. Parsing
    decodes them when `schema` is a current or historical vitals schema
    and rejects them as `unknown_schema` otherwise.
    """
    writer = fastavro.parse_schema(schema)
    prefix = _SINGLE_OBJECT_MAGIC + _fingerprint(writer)

    def encode(record: dict) -> bytes:
        out = io.BytesIO()
        out.write(prefix)
        fastavro.schemaless_writer(out, writer, record)
        return out.getvalue()

    return encode


def epoch_ms(value) -> int:
    """Convert a timestamp-millis value (int or datetime) to epoch ms."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return (value - _EPOCH) // datetime.timedelta(milliseconds=1)


def encode_vitals(record: dict) -> tuple[bytes, int]:
    """Encode a VitalReading or VitalBatch; return it and its event time.

    The event time is the reading's ``event_time`` or the batch's
    ``start_time``, in epoch milliseconds.

    Raises:
        ValueError: If the record is neither a VitalReading nor a
            VitalBatch.
    """
    if "first_sequence" in record:
        return encode_batch(record), epoch_ms(record["start_time"])
    if "sequence" in record:
        return encode_reading(record), epoch_ms(record["event_time"])
    raise ValueError(
        "record is neither a VitalReading nor a VitalBatch: it has no "
        "sequence or first_sequence field"
    )


def encode_reading(record: dict) -> bytes:
    """Encode a VitalReading with single-object encoding."""
    return encode_record(VITAL_READING, record)


def encode_batch(record: dict) -> bytes:
    """Encode a VitalBatch with single-object encoding."""
    return encode_record(VITAL_BATCH, record)


def _read_body(body: bytes, writer: dict, reader: dict) -> dict:
    stream = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(stream, writer, reader)
    except (EOFError, StopIteration) as error:
        raise DecodeError(
            "truncated", f"payload ended early: {error}"
        ) from error
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as error:
        raise DecodeError(
            "undecodable", f"invalid Avro body: {error}"
        ) from error
    except fastavro.read.SchemaResolutionError as error:
        raise DecodeError("incompatible_schema", str(error)) from error
    trailing = len(body) - stream.tell()
    if trailing:
        raise DecodeError(
            "undecodable", f"{trailing} bytes left after the Avro record"
        )
    return record


def decode_payload(
    payload: bytes, confluent_resolver: SchemaResolver | None = None
) -> tuple[str, dict]:
    """Decode one framed payload into (record kind, record).

    Args:
        payload: Single-object or Confluent-framed Avro bytes.
        confluent_resolver: Resolves Confluent schema ids; Confluent payloads
            are rejected as ``unknown_schema`` when it is None.

    Returns:
        ``(VITAL_READING | VITAL_BATCH, record)`` with the record resolved
        against the current reader schema.

    Raises:
        DecodeError: With a reason code when the payload is empty, framed
            in an unknown way, written with an unknown schema, truncated or
            otherwise invalid.
    """
    if not payload:
        raise DecodeError("empty", "payload has no bytes")
    if payload[:2] == _SINGLE_OBJECT_MAGIC:
        return _decode_single_object(payload)
    if payload[0] == _CONFLUENT_MAGIC:
        return _decode_confluent(payload, confluent_resolver)
    raise DecodeError(
        "unknown_framing",
        f"first byte 0x{payload[0]:02x} is neither the Avro single-object "
        "marker 0xc3 nor the Confluent magic byte 0x00",
    )


def decode_record(kind: str, payload: bytes) -> dict:
    """Decode a single-object payload written with `kind`'s current schema.

    For the pipeline's own outputs (alerts, dead letters, drift events),
    which consumers read with the schema they expect.

    Raises:
        DecodeError: ``unknown_schema`` when the payload is not framed with
            the current schema of `kind`, or ``truncated`` or
            ``undecodable`` when the body does not decode.
    """
    header_end = len(_SINGLE_OBJECT_MAGIC) + _FINGERPRINT_BYTES
    expected = _SINGLE_OBJECT_MAGIC + _current_fingerprint(kind)
    if payload[:header_end] != expected:
        raise DecodeError(
            "unknown_schema",
            f"header {payload[:header_end].hex()} is not the single-object "
            f"header of the current {kind} schema, {expected.hex()}",
        )
    schema = load_schema(kind)
    return _read_body(payload[header_end:], schema, schema)


def _decode_single_object(payload: bytes) -> tuple[str, dict]:
    header_end = len(_SINGLE_OBJECT_MAGIC) + _FINGERPRINT_BYTES
    if len(payload) < header_end:
        raise DecodeError(
            "truncated", f"{len(payload)} bytes is shorter than the header"
        )
    fingerprint = payload[len(_SINGLE_OBJECT_MAGIC) : header_end]
    known = _writer_schemas().get(fingerprint)
    if known is None:
        raise DecodeError(
            "unknown_schema",
            f"no known schema has fingerprint {fingerprint.hex()}",
        )
    kind, writer = known
    return kind, _read_body(payload[header_end:], writer, load_schema(kind))


def _decode_confluent(
    payload: bytes, resolver: SchemaResolver | None
) -> tuple[str, dict]:
    if len(payload) < _CONFLUENT_HEADER_BYTES:
        raise DecodeError(
            "truncated", f"{len(payload)} bytes is shorter than the header"
        )
    (schema_id,) = struct.unpack(">I", payload[1:_CONFLUENT_HEADER_BYTES])
    if resolver is None:
        raise DecodeError(
            "unknown_schema",
            f"Confluent schema id {schema_id} but no schema registry is "
            "configured",
        )
    try:
        writer = resolver(schema_id)
    except KeyError:
        raise DecodeError(
            "unknown_schema", f"schema registry has no schema id {schema_id}"
        ) from None
    kind = _kind_of(writer)
    if kind is None:
        raise DecodeError(
            "wrong_schema",
            f"schema id {schema_id} is {writer.get('name')!r}, not a "
            "VitalReading or VitalBatch",
        )
    body = payload[_CONFLUENT_HEADER_BYTES:]
    return kind, _read_body(body, writer, load_schema(kind))


def write_container(
    path: str | pathlib.Path, kind: str, records: Iterable[dict]
) -> None:
    """Write records to an Avro object container file, deflate-compressed."""
    with open(path, "wb") as out:
        fastavro.writer(out, load_schema(kind), records, codec="deflate")


def read_container(path: str | pathlib.Path) -> Iterator[dict]:
    """Yield the records of an Avro object container file."""
    with open(path, "rb") as stream:
        yield from fastavro.reader(stream)
