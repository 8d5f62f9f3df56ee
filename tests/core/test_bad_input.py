"""Bad input of every kind ends in the dead-letter output with a reason."""

import math
import os
import time

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.vitals_pipeline import build_pipeline
from schemas import VITAL_READING, encode_batch, encode_record
from tests.core.helpers import (
    T0_MS,
    batch_payload,
    batch_pipeline,
    batch_record,
)


def _reading(**changes) -> bytes:
    record = {
        "patient_id": "p",
        "device_id": "d",
        "sequence": 1,
        "event_time": T0_MS,
        "heart_rate_bpm": 72.0,
        "signal_quality": 0.9,
    }
    record.update(changes)
    return encode_record(VITAL_READING, record)


def test_every_bad_payload_dead_lettered():
    now_ms = int(time.time() * 1000)
    bad = {
        "unknown_framing": os.urandom(64)
        .replace(b"\x00", b"\x01")
        .replace(b"\xc3", b"\x01"),
        "truncated": _reading()[:12],
        "unknown_schema": b"\xc3\x01" + b"\x22" * 8 + b"\x00",
        "empty": b"",
        "out_of_range": _reading(spo2_pct=250.0, sequence=2),
        "not_a_number": _reading(heart_rate_bpm=math.nan, sequence=3),
        "future_timestamp": _reading(event_time=now_ms + 86_400_000),
        "missing_id": _reading(patient_id=""),
    }
    good = [batch_payload("p", 0), _reading(sequence=99)]
    pipeline = batch_pipeline()
    payloads = pipeline | beam.Create(list(bad.values()) + good)
    model = beam.pvalue.AsSingleton(pipeline | "NoModel" >> beam.Create([None]))
    outputs = build_pipeline(pipeline, pipeline.options, payloads, model)
    reasons = outputs["dead_letters"] | beam.Map(lambda d: d["reason"])
    assert_that(reasons, equal_to(list(bad)), label="OneLetterEach")
    kept = outputs["blocks"] | beam.Map(len)
    assert_that(kept, equal_to([60, 1]), label="GoodReadingsKept")
    payload_kept = outputs["dead_letters"] | "Payloads" >> beam.Map(
        lambda d: (d["reason"], len(d["payload"]) > 0 or d["reason"] == "empty")
    )
    assert_that(
        payload_kept,
        equal_to([(reason, True) for reason in bad]),
        label="RawBytesKept",
    )
    pipeline.run().wait_until_finish()


def test_batch_interval_outside_schema_range_dead_lettered():
    record = batch_record("p", 0, readings=10)
    pipeline = batch_pipeline()
    payloads = pipeline | beam.Create(
        [
            encode_batch({**record, "interval_ms": 0}),
            encode_batch({**record, "interval_ms": -1000}),
            encode_batch({**record, "interval_ms": 1000}),
        ]
    )
    model = beam.pvalue.AsSingleton(pipeline | "NoModel" >> beam.Create([None]))
    outputs = build_pipeline(pipeline, pipeline.options, payloads, model)
    details = outputs["dead_letters"] | beam.Map(
        lambda d: (d["reason"], d["detail"])
    )
    assert_that(
        details,
        equal_to(
            [
                ("invalid_record", "interval_ms=0 outside 10-60000"),
                ("invalid_record", "interval_ms=-1000 outside 10-60000"),
            ]
        ),
        label="BadIntervals",
    )
    kept = outputs["blocks"] | beam.Map(len)
    assert_that(kept, equal_to([10]), label="GoodBatchKept")
    pipeline.run().wait_until_finish()
