"""Bounded runs fill sliding windows per patient, without Beam's windowing.

Their rows must match what Beam's sliding windows and combine produce
from the same summaries: same windows, same counts, same features up to
the rounding of a different order of additions.
"""

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas import decode_payload
from tests.core.helpers import batch_payload, batch_pipeline
from transforms import features
from transforms.readings import block_from_batch
from transforms.windows import ComputeTrendFeatures

_SIZE_MS = 300_000
_PERIOD_MS = 60_000


def _parts(patient: str, minutes) -> list:
    parts = []
    for minute in minutes:
        heart_rate = np.linspace(70, 70 + minute, 60)
        _, record = decode_payload(
            batch_payload(patient, minute, heart_rate=heart_rate)
        )
        block = block_from_batch(record)
        parts += features.part_summaries(
            block, features.no_baseline(), _PERIOD_MS
        )
    return [(patient, part) for part in parts]


def _rounded(values) -> tuple:
    # NaN never equals itself, so a missing feature becomes None.
    return tuple(
        None if np.isnan(value) else round(value, 9) for value in values
    )


def _summaries():
    # p2 has a 4-minute gap, so some of its windows are too sparse.
    return _parts("p1", range(12)) + _parts("p2", [*range(4), *range(8, 12)])


def _assert_rows(streaming: bool, summaries) -> None:
    """Run ComputeTrendFeatures on bounded input; check its rows."""
    with batch_pipeline() as pipeline:
        rows = (
            pipeline
            | beam.Create(summaries, reshuffle=False)
            | beam.Map(
                lambda item: TimestampedValue(
                    item, Timestamp(micros=item[1].t_ref_ms * 1000)
                )
            )
            | ComputeTrendFeatures(_SIZE_MS, _PERIOD_MS, 0, streaming)
            | beam.Map(
                lambda row, ts=beam.DoFn.TimestampParam: (
                    row["patient_id"],
                    row["window_start"],
                    row["window_end"],
                    row["event_time"],
                    row["readings"],
                    ts.micros,
                    _rounded(row["features"].tolist()),
                )
            )
        )
        assert_that(rows, equal_to(_expected(summaries)))


def _expected(summaries) -> list:
    """Rows computed without Beam, by the training code's window merge."""
    by_patient = {}
    for patient, part in summaries:
        by_patient.setdefault(patient, []).append(part)
    expected = []
    for patient, parts in by_patient.items():
        for start, summary in features.sliding_window_summaries(
            parts, _SIZE_MS, _PERIOD_MS
        ):
            if summary.t_last_ms - summary.t_ref_ms < _SIZE_MS // 2:
                continue
            end = start + _SIZE_MS
            expected.append(
                (
                    patient,
                    start,
                    end,
                    summary.t_last_ms,
                    summary.readings,
                    (end - 1) * 1000,
                    _rounded(features.features_of(summary).tolist()),
                )
            )
    return expected


def test_beam_windows_give_the_expected_rows():
    # Checks the reference against Beam's own sliding windows.
    _assert_rows(True, _summaries())


def test_bounded_windows_give_the_same_rows():
    _assert_rows(False, _summaries())


def test_bounded_windows_ignore_input_order():
    _assert_rows(False, _summaries()[::-1])
