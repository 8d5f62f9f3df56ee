"""File sinks for alerts, dead letters and drift events.

JSON lines are for people and tools like `jq`; Avro files follow the
`alert` and `dead_letter` schemas for downstream systems. A dead letter's
raw payload is base64 in JSON. Drift events have no Avro schema and are
always JSON lines. Unbounded input is written as JSON lines, one file per
minute of event time.
"""

import base64
import json

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.transforms import window

from schemas import ALERT, DEAD_LETTER, load_schema


def alert_to_json(alert: dict) -> str:
    """Serialise an Alert record as one JSON line."""
    return json.dumps(alert, sort_keys=True, allow_nan=False, default=float)


def dead_letter_to_json(letter: dict) -> str:
    """Serialise a DeadLetter record, base64-encoding its payload."""
    shown = dict(letter)
    shown["payload"] = base64.b64encode(letter["payload"]).decode()
    return json.dumps(shown, sort_keys=True)


class WriteRecords(beam.PTransform):
    """Write Alert or DeadLetter records under a path prefix.

    Args:
        prefix: Output path without extension, for example
            ``out/alerts``; any Beam filesystem.
        kind: ``schemas.ALERT`` or ``schemas.DEAD_LETTER``.
        file_format: ``"jsonl"`` or ``"avro"``.
    """

    def __init__(self, prefix: str, kind: str, file_format: str = "jsonl"):
        super().__init__()
        if kind not in (ALERT, DEAD_LETTER):
            raise ValueError(f"unknown record kind {kind!r}")
        if file_format not in ("jsonl", "avro"):
            raise ValueError(
                f"unknown file format {file_format!r}; use jsonl or avro"
            )
        self._prefix = prefix
        self._kind = kind
        self._format = file_format

    def expand(self, records):
        if not records.is_bounded:
            return self._expand_unbounded(records)
        if self._format == "avro":
            return records | "WriteAvro" >> beam.io.WriteToAvro(
                self._prefix,
                schema=load_schema(self._kind),
                file_name_suffix=".avro",
                num_shards=1,
            )
        to_json = alert_to_json if self._kind == ALERT else dead_letter_to_json
        return (
            records
            | "ToJson" >> beam.Map(to_json)
            | "WriteJsonLines"
            >> beam.io.WriteToText(
                self._prefix,
                file_name_suffix=".jsonl",
                num_shards=1,
                shard_name_template="",
            )
        )

    def _expand_unbounded(self, records):
        to_json = alert_to_json if self._kind == ALERT else dead_letter_to_json
        return _write_json_lines_per_minute(records, self._prefix, to_json)


def drift_event_to_json(event: dict) -> str:
    """Serialise a drift event as one JSON line."""
    return json.dumps(event, default=float)


class WriteDriftEvents(beam.PTransform):
    """Write drift events as JSON lines under a path prefix.

    Args:
        prefix: Output path without extension, for example
            ``out/drift_events``, on any Beam filesystem.
    """

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, events):
        if not events.is_bounded:
            return _write_json_lines_per_minute(
                events, self._prefix, drift_event_to_json
            )
        return (
            events
            | "DriftToJson" >> beam.Map(drift_event_to_json)
            | "WriteJsonLines"
            >> beam.io.WriteToText(
                self._prefix,
                file_name_suffix=".jsonl",
                num_shards=1,
                shard_name_template="",
            )
        )


def _write_json_lines_per_minute(records, prefix: str, to_json):
    # Unbounded input needs windows for its files to close: one file per
    # minute of event time.
    folder, _, stem = prefix.rpartition("/")
    return (
        records
        | "WindowPerMinute" >> beam.WindowInto(window.FixedWindows(60))
        | "ToJson" >> beam.Map(to_json)
        | "WriteJsonLineFiles"
        >> fileio.WriteToFiles(
            path=folder or ".",
            file_naming=fileio.default_file_naming(stem, ".jsonl"),
            shards=1,
        )
    )
