"""Avro schemas of vitalwatch and the codec that frames them on the wire.

The `.avsc` files in `schemas/avro/` are the data contracts. Older versions
of a schema live in `schemas/avro/history/` so that a payload written by an
old device can still be resolved against the current reader schema.
"""

from schemas.codec import (
    ALERT,
    DEAD_LETTER,
    VITAL_BATCH,
    VITAL_READING,
    DecodeError,
    decode_payload,
    decode_record,
    encode_batch,
    encode_reading,
    encode_record,
    encode_vitals,
    epoch_ms,
    load_schema,
    read_container,
    record_encoder,
    write_container,
)

__all__ = [
    "ALERT",
    "DEAD_LETTER",
    "VITAL_BATCH",
    "VITAL_READING",
    "DecodeError",
    "decode_payload",
    "decode_record",
    "encode_batch",
    "encode_reading",
    "encode_record",
    "encode_vitals",
    "epoch_ms",
    "load_schema",
    "read_container",
    "record_encoder",
    "write_container",
]
