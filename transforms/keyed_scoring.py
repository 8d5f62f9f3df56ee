"""Streaming scoring with the model held in keyed state, not a side input.

Two limits of Beam 2.62.0 rule out a refreshed side input in streaming
runs here. On the portable Flink runner, every checkpoint of a stage that
contains side-input data fails with "ClassCastException: class [B cannot be
cast to class org.apache.beam.sdk.util.WindowedValue". On the
BundleBasedDirectRunner, a global-window side input with a repeated
trigger never refreshes: main-input rows wait for the side input's
watermark to reach the end of time.

So in streaming runs the promoted models arrive as a PCollection and are
broadcast to every scoring shard, where a stateful DoFn keeps the newest
valid model in keyed state. The model is then part of the checkpoint, the
refresh needs no side-input machinery, and each row is scored by the
model that was current when its batch closed. Rows are buffered per
shard until the watermark passes them or the batch is full. Before a
newer model replaces the current one, the buffered rows are scored with
the current one, so versions apply in promotion order.

The same step measures feature drift. As a row arrives, it is paired with
the current model's reference histograms. That model is the one that
scores the row, because a model change first flushes the buffer. At the
end of each bundle, its rows are binned and the bin counts go to a second
output, `drift_counts`, for `transforms.drift.ComputeDriftPerWindow`.
They are output there and not from the flush timer, because the
BundleBasedDirectRunner of Beam 2.62.0 does not hold the watermark for
user timers. A timer's output can then arrive behind the watermark and be
dropped by event-time windows.
"""

import logging

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)

from models.bundle import servability_problems
from transforms import state_cache_sizing
from transforms.drift import BundleBinCounts, DriftReferences
from transforms.scoring import ScoringMetrics, _shard, score_batch

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = "vitalwatch"
_MODEL, _ROW = "model", "row"
DRIFT_COUNTS = "drift_counts"


class _ScoreWithKeyedModelDoFn(beam.DoFn):
    MODEL = ReadModifyWriteStateSpec("model", PickleCoder())
    ROWS = BagStateSpec("rows", PickleCoder())
    COUNT = ReadModifyWriteStateSpec("count", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, max_batch_size: int):
        self._max_batch_size = max_batch_size
        self._metrics = ScoringMetrics()
        self._without_reference = Metrics.counter(
            _NAMESPACE, "drift_rows_without_reference"
        )

    def setup(self):
        state_cache_sizing.install()
        self._references = DriftReferences()

    def start_bundle(self):
        self._bin_counts = BundleBinCounts(self._references)

    def finish_bundle(self):
        for counts in self._bin_counts.drain():
            yield beam.pvalue.TaggedOutput(DRIFT_COUNTS, counts)

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        model_state=beam.DoFn.StateParam(MODEL),
        rows_state=beam.DoFn.StateParam(ROWS),
        count_state=beam.DoFn.StateParam(COUNT),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        _, (kind, value) = element
        current = model_state.read()
        if kind == _MODEL:
            if not self._is_newer(current, value):
                return
            yield from self._flush(current, rows_state, count_state)
            model_state.write(value)
            self._metrics.loaded.inc()
            _LOGGER.info("Scoring with model version %d", value.version)
            return
        if not self._bin_counts.add(current, value["features"], timestamp):
            self._without_reference.inc()
        rows_state.add(value)
        count = (count_state.read() or 0) + 1
        count_state.write(count)
        if count >= self._max_batch_size:
            yield from self._flush(current, rows_state, count_state)
        else:
            flush.set(timestamp)

    @on_timer(FLUSH)
    def _on_flush(
        self,
        model_state=beam.DoFn.StateParam(MODEL),
        rows_state=beam.DoFn.StateParam(ROWS),
        count_state=beam.DoFn.StateParam(COUNT),
    ):
        yield from self._flush(model_state.read(), rows_state, count_state)

    def _is_newer(self, current, candidate) -> bool:
        if candidate is None:
            return False
        if current is not None and candidate.version <= current.version:
            return False
        problems = servability_problems(candidate)
        if problems:
            self._metrics.rejected.inc()
            _LOGGER.error(
                "Rejected model version %s, still scoring with %s: %s",
                getattr(candidate, "version", "?"),
                "none" if current is None else current.version,
                "; ".join(problems),
            )
            return False
        return True

    def _flush(self, bundle, rows_state, count_state):
        batch = list(rows_state.read())
        if not batch:
            return
        rows_state.clear()
        count_state.clear()
        yield from score_batch(bundle, batch, self._metrics)


class ScoreWindowsWithModelStream(beam.PTransform):
    """Score feature rows with models that arrive as a stream.

    Returns a DoOutputsTuple: `events`, the main output, contains the anomaly
    events, and `drift_counts` holds (model version, bin counts) pairs for
    `transforms.drift.ComputeDriftPerWindow`. Rows that arrive while no
    model, or one without feature statistics, is current are counted in
    `drift_rows_without_reference` and not binned.

    Args:
        model_updates: PCollection of ModelBundles (or None) in the global
            window, in promotion order; each is broadcast to every shard.
        max_batch_size: Largest batch. Default 4096 rows.
        shards: Number of scoring keys, the parallelism of scoring.
            Default 4.
    """

    def __init__(self, model_updates, max_batch_size=4096, shards=4):
        super().__init__()
        self._model_updates = model_updates
        self._max_batch_size = max_batch_size
        self._shards = shards

    def expand(self, rows):
        shards = self._shards
        keyed_rows = rows | "KeyRowsByShard" >> beam.Map(
            lambda row: (_shard(row["patient_id"], shards), (_ROW, row))
        ).with_output_types(tuple[int, tuple])
        keyed_models = self._model_updates | "BroadcastModels" >> beam.FlatMap(
            lambda model: [(shard, (_MODEL, model)) for shard in range(shards)]
        ).with_output_types(tuple[int, tuple])
        return (
            (keyed_models, keyed_rows)
            | "MergeModelsAndRows" >> beam.Flatten()
            | "ScoreWithKeyedModel"
            >> beam.ParDo(
                _ScoreWithKeyedModelDoFn(self._max_batch_size)
            ).with_outputs(DRIFT_COUNTS, main="events")
        )
