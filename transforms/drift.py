"""Feature drift of the live rows against the scoring model's training data.

Rows are binned with the edges of the model's reference histograms (stored
in its metadata under "feature_statistics", see `models.drift`). The bin
counts are summed per model version over fixed event-time windows, and the
population stability index (PSI) is computed per feature, window and
version. Each PSI updates the Beam metrics `drift_psi_<feature>`, a
distribution and a gauge in thousandths of PSI because Beam metrics hold
integers. Every feature whose PSI exceeds the threshold yields a drift
event.

Two paths bin the rows, and `ComputeDriftPerWindow` does the rest for both:

- `MonitorDrift` bins rows against a model side input (bounded runs).
- In streaming runs the keyed scoring step bins each row against the
  model in its keyed state with `BundleBinCounts`, so drift is measured
  against the version that scored the row.

Drift events are dicts with kind "feature_drift", feature, psi, threshold,
rows, model_version, window_start and window_end (epoch ms); they name no
patient and carry no reading.
"""

import logging
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue

from models import drift

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = "vitalwatch"

# Ten minutes of five-minute windows every minute: about ten rows per
# patient, so a ward of a few dozen patients gives a stable PSI.
DRIFT_WINDOW_SEC = 600
# Fewer rows than this make the PSI of ten bins mostly sampling noise.
DRIFT_MIN_ROWS = 100
_MAX_BATCH_ROWS = 1024
_PSI_METRIC_SCALE = 1000


class ReferenceHistograms:
    """Reference histograms by model version, read from each model once."""

    def __init__(self):
        self._by_version = {}

    def of(self, bundle) -> dict | None:
        """Return the histograms of `bundle`; None if it has none."""
        if bundle is None:
            return None
        if bundle.version not in self._by_version:
            try:
                histograms = drift.training_histograms(bundle.metadata)
            except KeyError:
                _LOGGER.warning(
                    "Model version %s has no feature statistics, so drift "
                    "is not measured",
                    bundle.version,
                )
                histograms = None
            self._by_version[bundle.version] = histograms
        return self._by_version[bundle.version]


def count_feature_bins(histograms: dict, rows: np.ndarray) -> dict:
    """Count feature rows per bin of the reference histograms.

    Args:
        histograms: Reference histograms by feature name, one per column of
            `rows` and in the same order.
        rows: Feature rows, one per line.

    Returns:
        The bin counts that `ComputeDriftPerWindow` sums: `histograms`,
        `bins` (counts per bin, one array per feature), `missing` (NaN
        count per feature) and `rows`.
    """
    bins, missing = [], []
    for i, histogram in enumerate(histograms.values()):
        counts, absent = drift.bin_counts(rows[:, i], histogram["edges"])
        bins.append(counts)
        missing.append(absent)
    return {
        "histograms": histograms,
        "bins": bins,
        "missing": np.asarray(missing),
        "rows": len(rows),
    }


class BundleBinCounts:
    """Bin counts of one bundle's rows, per model version and timestamp.

    A DoFn adds rows while it processes a bundle and outputs `drain()` in
    `finish_bundle`. Each group of rows with the same model version and
    timestamp becomes one (version, bin counts) element, so the reference
    histograms travel once per group, not once per row. The elements keep
    the rows' timestamps, and a runner holds the watermark until a bundle's
    output is committed, so they are as timely as the rows themselves.

    Args:
        references: The reference histograms cache to read models with.
    """

    def __init__(self, references: ReferenceHistograms):
        self._references = references
        self._pending = {}

    def add(self, bundle, features: np.ndarray, timestamp) -> bool:
        """Keep one feature row to bin against `bundle`.

        Returns:
            False, keeping nothing, when `bundle` is None or has no
            reference histograms.
        """
        histograms = self._references.of(bundle)
        if histograms is None:
            return False
        key = (bundle.version, timestamp)
        if key not in self._pending:
            self._pending[key] = (histograms, [])
        self._pending[key][1].append(features)
        return True

    def drain(self) -> Iterator[WindowedValue]:
        """Bin the kept rows; yield (version, counts) in the global window."""
        pending, self._pending = self._pending, {}
        for (version, timestamp), (histograms, rows) in pending.items():
            counts = count_feature_bins(histograms, np.vstack(rows))
            yield WindowedValue(
                (version, counts), timestamp, (window.GlobalWindow(),)
            )


class _BinCountsFn(beam.CombineFn):
    """Sum per-feature bin counts; the accumulator also carries the edges."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, counts):
        return self.merge_accumulators([accumulator, counts])

    def merge_accumulators(self, accumulators):
        merged = None
        for counts in accumulators:
            if counts is None:
                continue
            if merged is None:
                merged = {**counts, "bins": [b.copy() for b in counts["bins"]]}
                continue
            for total, part in zip(merged["bins"], counts["bins"], strict=True):
                total += part
            merged["missing"] = merged["missing"] + counts["missing"]
            merged["rows"] += counts["rows"]
        return merged

    def extract_output(self, accumulator):
        return accumulator


class _CountFeatureBinsDoFn(beam.DoFn):
    def __init__(self):
        self._without_reference = Metrics.counter(
            _NAMESPACE, "drift_rows_without_reference"
        )

    def setup(self):
        self._references = ReferenceHistograms()

    def process(self, batch, bundle):
        histograms = self._references.of(bundle)
        if histograms is None:
            self._without_reference.inc(len(batch))
            return
        rows = np.vstack([row["features"] for row in batch])
        yield bundle.version, count_feature_bins(histograms, rows)


class _ComputePsiDoFn(beam.DoFn):
    def __init__(self, threshold: float, min_rows: int):
        self._threshold = threshold
        self._min_rows = min_rows
        self._small = Metrics.counter(_NAMESPACE, "drift_windows_too_small")
        self._events = Metrics.counter(_NAMESPACE, "drift_events")

    def setup(self):
        self._metrics = {}

    def process(self, element, win=beam.DoFn.WindowParam):
        version, counts = element
        if counts["rows"] < self._min_rows:
            self._small.inc()
            return
        for i, (name, histogram) in enumerate(counts["histograms"].items()):
            psi = drift.histogram_psi(
                histogram, counts["bins"][i], int(counts["missing"][i])
            )
            self._record(name, psi)
            if psi > self._threshold:
                self._events.inc()
                event = self._event(name, psi, version, counts["rows"], win)
                yield window.TimestampedValue(event, win.max_timestamp())

    def _record(self, name: str, psi: float) -> None:
        if name not in self._metrics:
            metric = f"drift_psi_{name}"
            self._metrics[name] = (
                Metrics.distribution(_NAMESPACE, metric),
                Metrics.gauge(_NAMESPACE, metric),
            )
        distribution, gauge = self._metrics[name]
        value = int(round(psi * _PSI_METRIC_SCALE))
        distribution.update(value)
        gauge.set(value)

    def _event(self, name, psi, version, rows, win) -> dict:
        return {
            "kind": "feature_drift",
            "feature": name,
            "psi": float(psi),
            "threshold": self._threshold,
            "rows": int(rows),
            "model_version": str(version),
            "window_start": int(win.start.micros // 1000),
            "window_end": int(win.end.micros // 1000),
        }


class ComputeDriftPerWindow(beam.PTransform):
    """Sum bin counts per model version and window, then compute the PSI.

    The input is (model version, bin counts) pairs, as
    `count_feature_bins` returns them, stamped with the event time of their
    rows. A window whose rows were binned against two model versions gives
    one PSI per version, each over that version's rows only.

    Args:
        window_size_sec: Event-time window of the PSI, in seconds.
            Default 600.
        threshold: PSI above which a feature yields a drift event.
            Default 0.25.
        min_rows: Windows with fewer rows of a version are counted in
            `drift_windows_too_small` and not measured. Default 100.
    """

    def __init__(
        self,
        window_size_sec: int = DRIFT_WINDOW_SEC,
        threshold: float = drift.DRIFT_PSI_THRESHOLD,
        min_rows: int = DRIFT_MIN_ROWS,
    ):
        super().__init__()
        self._window_size_sec = window_size_sec
        self._threshold = threshold
        self._min_rows = min_rows

    def expand(self, counts):
        _LOGGER.info(
            "Measuring feature drift over %d s windows, PSI threshold %s, "
            "at least %d rows",
            self._window_size_sec,
            self._threshold,
            self._min_rows,
        )
        return (
            counts
            | "WindowBinCounts"
            >> beam.WindowInto(window.FixedWindows(self._window_size_sec))
            | "SumFeatureBins" >> beam.CombinePerKey(_BinCountsFn())
            | "ComputePsi"
            >> beam.ParDo(_ComputePsiDoFn(self._threshold, self._min_rows))
        )


class MonitorDrift(beam.PTransform):
    """Compute feature drift per fixed event-time window; emit drift events.

    Rows are binned against the model in the side input, so the reference
    follows live model refreshes. A window whose rows were scored by two
    model versions gives one PSI per version.

    NOTE: rows from late panes of the feature windows arrive behind the
    watermark and are dropped by the fixed windows here, so the PSI covers
    on-time rows only.

    Args:
        model: Singleton side input holding the current ModelBundle or
            None. Rows are counted in `drift_rows_without_reference` and
            not measured while it is None or has no feature statistics.
        window_size_sec: Event-time window of the PSI, in seconds.
            Default 600.
        threshold: PSI above which a feature yields a drift event.
            Default 0.25.
        min_rows: Windows with fewer rows are counted in
            `drift_windows_too_small` and not measured. Default 100.
    """

    def __init__(
        self,
        model,
        window_size_sec: int = DRIFT_WINDOW_SEC,
        threshold: float = drift.DRIFT_PSI_THRESHOLD,
        min_rows: int = DRIFT_MIN_ROWS,
    ):
        super().__init__()
        self._model = model
        self._window_size_sec = window_size_sec
        self._threshold = threshold
        self._min_rows = min_rows

    def expand(self, rows):
        # Rows are windowed before batching because BatchElements stamps a
        # batch in the global window with the end of time.
        return (
            rows
            | "WindowForDrift"
            >> beam.WindowInto(window.FixedWindows(self._window_size_sec))
            | "BatchRowsForDrift"
            >> beam.BatchElements(max_batch_size=_MAX_BATCH_ROWS)
            | "CountFeatureBins"
            >> beam.ParDo(_CountFeatureBinsDoFn(), self._model)
            | "ComputeDrift"
            >> ComputeDriftPerWindow(
                self._window_size_sec, self._threshold, self._min_rows
            )
        )
