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

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class DriftReference:
    """One model version's reference histograms, ready to bin rows with.

    Attributes:
        histograms: Reference histograms by feature name, in the order of
            the feature columns, as `models.drift.training_histograms`
            returns them.
        edges: Interior bin edges, one line per feature, padded with +inf
            to the longest line, so that all features bin in one step.
        edge_counts: Number of real edges per feature.
    """

    histograms: dict
    edges: np.ndarray
    edge_counts: np.ndarray

    @classmethod
    def from_histograms(cls, histograms: dict) -> "DriftReference":
        """Build the reference of histograms by feature name."""
        lines = [histogram["edges"] for histogram in histograms.values()]
        edge_counts = np.array([len(line) for line in lines], dtype=np.int64)
        edges = np.full((len(lines), int(edge_counts.max(initial=0))), np.inf)
        for i, line in enumerate(lines):
            edges[i, : len(line)] = line
        return cls(histograms, edges, edge_counts)

    def count_bins(self, rows: np.ndarray) -> dict:
        """Count feature rows per bin, as `models.drift.bin_counts` does.

        Args:
            rows: Feature rows, one per line, one column per histogram.

        Returns:
            The bin counts that `ComputeDriftPerWindow` sums: `histograms`,
            `counts` (an integer matrix with one line per feature: the
            counts of its len(edges) + 1 bins, zeros up to the widest
            feature, and the NaN count in the last column) and `rows`.
        """
        values = np.asarray(rows, dtype=np.float64)
        features, width = len(self.edge_counts), self.edges.shape[1] + 2
        # The number of edges at or below a value is its bin, as
        # searchsorted(..., "right") gives. A value of +inf also passes the
        # +inf padding, so the bin is capped at the real edge count.
        index = (values[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
        index = np.minimum(index, self.edge_counts)
        index[np.isnan(values)] = width - 1
        flat = index + np.arange(features) * width
        counts = np.bincount(flat.ravel(), minlength=features * width)
        return {
            "histograms": self.histograms,
            "counts": counts.reshape(features, width),
            "rows": len(values),
        }


class DriftReferences:
    """Drift references by model version, read from each model once."""

    def __init__(self):
        self._by_version = {}

    def of(self, bundle) -> DriftReference | None:
        """Return the reference of `bundle`; None if it has none."""
        if bundle is None:
            return None
        if bundle.version not in self._by_version:
            reference = None
            try:
                histograms = drift.training_histograms(bundle.metadata)
                reference = DriftReference.from_histograms(histograms)
            except KeyError:
                _LOGGER.warning(
                    "Model version %s has no feature statistics, so drift "
                    "is not measured",
                    bundle.version,
                )
            self._by_version[bundle.version] = reference
        return self._by_version[bundle.version]


class BundleBinCounts:
    """Bin counts of one bundle's rows, per model version and timestamp.

    A DoFn adds rows while it processes a bundle and outputs `drain()` in
    `finish_bundle`. Each group of rows with the same model version and
    timestamp becomes one (version, bin counts) element, so the reference
    histograms travel once per group, not once per row. The elements keep
    the rows' timestamps, and a runner holds the watermark until a bundle's
    output is committed, so they are as timely as the rows themselves.

    Args:
        references: The cache of drift references to read models with.
    """

    def __init__(self, references: DriftReferences):
        self._references = references
        self._pending = {}

    def add(self, bundle, features: np.ndarray, timestamp) -> bool:
        """Keep one feature row to bin against `bundle`.

        Returns:
            False, keeping nothing, when `bundle` is None or has no
            reference histograms.
        """
        reference = self._references.of(bundle)
        if reference is None:
            return False
        key = (bundle.version, timestamp)
        if key not in self._pending:
            self._pending[key] = (reference, [])
        self._pending[key][1].append(features)
        return True

    def drain(self) -> Iterator[WindowedValue]:
        """Bin the kept rows; yield (version, counts) in the global window."""
        pending, self._pending = self._pending, {}
        for (version, timestamp), (reference, rows) in pending.items():
            counts = reference.count_bins(np.vstack(rows))
            yield WindowedValue(
                (version, counts), timestamp, (window.GlobalWindow(),)
            )


class _BinCountsFn(beam.CombineFn):
    """Sum bin counts; the accumulator also carries the histograms."""

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
                merged = {**counts, "counts": counts["counts"].copy()}
                continue
            merged["counts"] += counts["counts"]
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
        self._references = DriftReferences()

    def process(self, batch, bundle):
        reference = self._references.of(bundle)
        if reference is None:
            self._without_reference.inc(len(batch))
            return
        rows = np.vstack([row["features"] for row in batch])
        yield bundle.version, reference.count_bins(rows)


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
        matrix = counts["counts"]
        for i, (name, histogram) in enumerate(counts["histograms"].items()):
            bins = matrix[i, : len(histogram["edges"]) + 1]
            psi = drift.histogram_psi(histogram, bins, int(matrix[i, -1]))
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
    `DriftReference.count_bins` returns them, stamped with the event time
    of their rows. A window whose rows were binned against two model
    versions gives one PSI per version, each over that version's rows only.

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
