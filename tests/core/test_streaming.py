"""TestStream tests of event time, windows, lateness, timers and dedup."""

import apache_beam as beam
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from pipelines.vitals_pipeline import build_pipeline
from tests.core.helpers import T0_MS, batch_payload, streaming_pipeline

MINUTE_S = 60


def _run(stream, *flags):
    """Run the vitals graph over `stream`; return outputs for assertions."""
    pipeline = streaming_pipeline(*flags)
    payloads = pipeline | "Stream" >> stream
    model = beam.pvalue.AsSingleton(pipeline | "NoModel" >> beam.Create([None]))
    outputs = build_pipeline(pipeline, pipeline.options, payloads, model)
    return pipeline, outputs


def _at(minute: float) -> float:
    return T0_MS / 1000 + minute * MINUTE_S


def _stream_of_minutes(patient, minutes, **kwargs):
    stream = TestStream().advance_watermark_to(_at(0))
    for minute in minutes:
        stream = stream.add_elements(
            [
                beam.window.TimestampedValue(
                    batch_payload(patient, minute, **kwargs), _at(minute)
                )
            ]
        ).advance_watermark_to(_at(minute + 1))
    return stream


def test_sliding_windows_start_every_minute():
    stream = _stream_of_minutes("p", range(6)).advance_watermark_to_infinity()
    pipeline, outputs = _run(stream)
    starts = outputs["features"] | beam.Map(
        lambda row: (row["window_start"] - T0_MS) // 60_000
    )
    # Edge windows spanning under half their size are not scored.
    assert_that(starts, equal_to(list(range(-2, 4))))
    pipeline.run().wait_until_finish()


def test_late_reading_goes_to_dead_letters():
    stream = (
        _stream_of_minutes("p", range(3))
        .advance_watermark_to(_at(20))
        .add_elements(
            [
                beam.window.TimestampedValue(
                    batch_payload("p", 4, readings=5), _at(20)
                )
            ]
        )
        .add_elements(
            [
                beam.window.TimestampedValue(
                    batch_payload("p", 19, readings=5), _at(20)
                )
            ]
        )
        .advance_watermark_to_infinity()
    )
    pipeline, outputs = _run(stream)
    reasons = outputs["dead_letters"] | beam.Map(lambda d: d["reason"])
    assert_that(reasons, equal_to(["late"] * 5))
    pipeline.run().wait_until_finish()


def test_silence_timer_raises_device_silent():
    stream = _stream_of_minutes("p", range(3)).advance_watermark_to_infinity()
    pipeline, outputs = _run(stream, "--silence_timeout_sec=60")
    kinds = outputs["alerts"] | beam.Map(lambda a: (a["kind"], a["tier"]))
    assert_that(kinds, equal_to([("device_silent", "INFO")]))
    pipeline.run().wait_until_finish()


def test_duplicates_removed_before_windows():
    resent = beam.window.TimestampedValue(batch_payload("p", 0), _at(2.5))
    stream = (
        _stream_of_minutes("p", range(3))
        .add_elements([resent])
        .advance_watermark_to_infinity()
    )
    pipeline, outputs = _run(stream)
    readings = outputs["blocks"] | beam.Map(len)
    assert_that(readings, equal_to([60] * 4), label="AllBlocksParsed")
    per_window = outputs["features"] | beam.Map(lambda row: row["readings"])
    # Windows starting at -2, -1 and 0 min span the three minutes; the
    # resent minute must not be counted twice.
    assert_that(per_window, equal_to([180] * 3), label="EachReadingOnce")
    pipeline.run().wait_until_finish()


def test_tachycardia_alert_within_seconds():
    stream = (
        _stream_of_minutes("p", range(2))
        .add_elements(
            [
                beam.window.TimestampedValue(
                    batch_payload("p", 2, heart_rate=160.0, readings=12),
                    _at(2),
                )
            ]
        )
        .advance_watermark_to_infinity()
    )
    pipeline, outputs = _run(stream)
    alerts = (
        outputs["alerts"]
        | beam.Filter(lambda a: a["kind"] != "device_silent")
        | beam.Map(
            lambda a: (a["kind"], a["tier"], (a["event_time"] - T0_MS) // 1000)
        )
    )
    assert_that(alerts, equal_to([("tachycardia", "SEVERE", 128)]))
    pipeline.run().wait_until_finish()
