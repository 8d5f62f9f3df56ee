"""Per-patient sliding event-time windows of trend features.

The input is (patient_id, Summary) stamped with event time. Windows merge
the summaries with a CombineFn, so a window costs a few array additions
however many readings it spans. Windows whose readings span less than
half the window are not turned into rows. The output leaves the sliding
windows for the global window, so that the scoring step can batch rows of
many patients and windows together. Bounded input skips Beam's windowing:
each patient's summaries are grouped and merged into their windows in one
call, with the same rows as a result.
"""

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import features

_NAMESPACE = "vitalwatch"


class _MergeSummariesFn(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, accumulator, summary):
        return features.merge([accumulator, summary])

    def merge_accumulators(self, accumulators):
        return features.merge(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class _FeatureRows:
    """Converter of a window's merged summary into a feature row."""

    def __init__(self, min_span_ms: int):
        self._min_span_ms = min_span_ms
        self._sparse = Metrics.counter(_NAMESPACE, "windows_too_sparse")
        self._rows = Metrics.counter(_NAMESPACE, "feature_rows")

    def row(self, patient_id, summary, start_ms: int, end_ms: int):
        """Return the window's row, or None if it is empty or too sparse."""
        if summary is None:
            return None
        span_ms = summary.t_last_ms - summary.t_ref_ms
        if span_ms < self._min_span_ms:
            # The first and last windows of a stream hold a few readings;
            # their spread and slope are noise, not a trend.
            self._sparse.inc()
            return None
        self._rows.inc()
        return {
            "patient_id": patient_id,
            "window_start": start_ms,
            "window_end": end_ms,
            "event_time": summary.t_last_ms,
            "readings": summary.readings,
            "features": features.features_of(summary),
            "baseline": summary.baseline,
        }


class _ToFeatureRowDoFn(beam.DoFn):
    def __init__(self, min_span_ms: int):
        self._rows = _FeatureRows(min_span_ms)
        self._late_panes = Metrics.counter(_NAMESPACE, "window_late_panes")

    def process(
        self,
        element,
        win=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
    ):
        patient_id, summary = element
        row = self._rows.row(
            patient_id,
            summary,
            int(win.start.micros // 1000),
            int(win.end.micros // 1000),
        )
        if row is None:
            return
        if pane.timing == beam.utils.windowed_value.PaneInfoTiming.LATE:
            self._late_panes.inc()
        yield row


def _summary_order(summary) -> tuple:
    return (summary.t_ref_ms, summary.t_last_ms, summary.readings)


class _SlidePatientWindowsDoFn(beam.DoFn):
    """Window filling that merges a patient's summaries into all windows.

    Bounded runs use this in place of Beam's sliding windows and combine.
    Each summary is shuffled once rather than once per window, and every
    window merges its summaries in time order, so its features do not
    depend on how a runner split the input into bundles. Rows carry the
    timestamp that Beam's runners give a window's combined output, the end
    of the window less a millisecond.
    """

    def __init__(self, size_ms: int, period_ms: int):
        self._size_ms = size_ms
        self._period_ms = period_ms
        self._rows = _FeatureRows(size_ms // 2)

    def process(self, element):
        patient_id, summaries = element
        parts = sorted(summaries, key=_summary_order)
        windows = features.sliding_window_summaries(
            parts, self._size_ms, self._period_ms
        )
        for start, summary in windows:
            end = start + self._size_ms
            row = self._rows.row(patient_id, summary, start, end)
            if row is not None:
                yield TimestampedValue(row, Timestamp(micros=(end - 1) * 1000))


class ComputeTrendFeatures(beam.PTransform):
    """Sliding-window trend features per patient.

    Output rows are dicts with patient_id, window_start and window_end (ms),
    event_time (latest reading, ms), readings (count), features (array in
    `features.FEATURE_NAMES` order) and baseline, in the global window.

    Args:
        size_ms: Window size. Default 5 min.
        period_ms: Window period. Default 1 min.
        allowed_lateness_ms: How long after the watermark passes a window's
            end late readings still update it, each update a late pane.
        streaming: Whether the input is unbounded. Bounded input is
            grouped per patient and merged into its windows in one call
            (`_SlidePatientWindowsDoFn`), without Beam's windowing.
    """

    def __init__(
        self,
        size_ms: int,
        period_ms: int,
        allowed_lateness_ms: int,
        streaming: bool = True,
    ):
        super().__init__()
        self._size_ms = size_ms
        self._period_ms = period_ms
        self._allowed_lateness_ms = allowed_lateness_ms
        self._streaming = streaming

    def _windowing(self) -> beam.WindowInto:
        windows = window.SlidingWindows(
            self._size_ms / 1000, self._period_ms / 1000
        )
        return beam.WindowInto(
            windows,
            trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
            accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
            allowed_lateness=Duration(micros=self._allowed_lateness_ms * 1000),
        )

    def expand(self, summaries):
        if not self._streaming:
            slide = _SlidePatientWindowsDoFn(self._size_ms, self._period_ms)
            return (
                summaries
                | "GroupByPatient" >> beam.GroupByKey()
                | "SlideWindows" >> beam.ParDo(slide)
            )
        return (
            summaries
            | "WindowSliding" >> self._windowing()
            | "MergeSummaries" >> beam.CombinePerKey(_MergeSummariesFn())
            | "ToFeatureRows"
            >> beam.ParDo(_ToFeatureRowDoFn(self._size_ms // 2))
            | "WindowGlobal" >> beam.WindowInto(window.GlobalWindows())
        )
