"""Train an Isolation Forest from Avro history with the pipeline's features.

History is any iterable of decoded VitalReading or VitalBatch records:
`history_table` reads them from Avro container files, and
`models.kafka_history` from an offset range of a Kafka topic. Both feed
`table_from_records`. Readings are validated and de-duplicated like the
pipeline does, grouped per patient in event-time order, folded into the
rolling baseline block by block and summarised with
`transforms.features.part_summaries`, then merged into the same sliding
windows. The rows that come out are
exactly the rows the pipeline scores.

`train` fits a model on a `HistoryTable` and records in its metadata what
the registry, the promote gate and drift monitoring need: the training
window of event time, the window size and per-feature statistics.
"""

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from sklearn.ensemble import IsolationForest

from models import drift
from models.bundle import ModelBundle
from schemas import read_container
from transforms import features, validate
from transforms.baseline import Baseline
from transforms.readings import (
    ReadingBlock,
    block_from_batch,
    block_from_reading,
    concat,
)

_LOGGER = logging.getLogger(__name__)

# Training rows are cut into blocks of this many readings, the size a
# gateway sends, so that the baseline evolves as it does in the pipeline.
_BLOCK_READINGS = 60
# A long history run logs its progress at most this often.
_PROGRESS_EVERY_SEC = 10.0
# Robust scales never go below this, so a constant training feature does
# not turn every small change into a huge z-score.
_MIN_SCALE = 1e-3


def blocks_from_records(records: Iterable[dict]) -> dict[str, ReadingBlock]:
    """Group decoded records into one validated, sorted block per patient."""
    pieces = defaultdict(list)
    for record in records:
        if "first_sequence" in record:
            block = block_from_batch(record)
        else:
            block = block_from_reading(record)
        pieces[(block.patient_id, block.device_id)].append(block)
    per_patient = {}
    for (patient_id, _), blocks in sorted(pieces.items()):
        block = concat(blocks)
        valid, _ = validate.invalid_reasons(block, {}, now_ms=2**62)
        block = block.take(valid)
        _, first = np.unique(block.sequence, return_index=True)
        block = block.take(np.sort(first))
        block = block.take(np.argsort(block.event_time_ms, kind="stable"))
        if len(block):
            per_patient[patient_id] = block
    return per_patient


def feature_rows(
    block: ReadingBlock, size_ms: int, period_ms: int
) -> tuple[np.ndarray, list[int]]:
    """Compute the pipeline's window feature rows for one patient.

    Returns:
        A (windows, features) array and the window start of each row.
    """
    baseline = Baseline()
    parts = []
    for start in range(0, len(block), _BLOCK_READINGS):
        chunk = block.take(slice(start, start + _BLOCK_READINGS))
        baseline.update(chunk)
        parts.extend(
            features.part_summaries(chunk, baseline.snapshot(), period_ms)
        )
    windows = [
        (start, summary)
        for start, summary in features.sliding_window_summaries(
            parts, size_ms, period_ms
        )
        if summary.t_last_ms - summary.t_ref_ms >= size_ms // 2
    ]
    if not windows:
        return np.empty((0, len(features.FEATURE_NAMES))), []
    rows = np.vstack([features.features_of(s) for _, s in windows])
    return rows, [start for start, _ in windows]


@dataclasses.dataclass
class HistoryTable:
    """Feature rows of a history, with where each row comes from.

    Attributes:
        rows: (windows, features) array in FEATURE_NAMES order.
        patient_ids: Patient of each row.
        window_starts: Window start of each row, epoch ms.
        first_event_ms: Earliest valid reading, epoch ms; None if none.
        last_event_ms: Latest valid reading, epoch ms; None if none.
    """

    rows: np.ndarray
    patient_ids: list[str]
    window_starts: np.ndarray
    first_event_ms: int | None
    last_event_ms: int | None


def history_table(
    paths: Iterable[str], size_ms: int, period_ms: int
) -> HistoryTable:
    """Compute the feature rows of every patient in the given Avro files."""
    records = (record for path in paths for record in read_container(path))
    return table_from_records(records, size_ms, period_ms)


def table_from_records(
    records: Iterable[dict], size_ms: int, period_ms: int
) -> HistoryTable:
    """Compute the feature rows of every patient in decoded records.

    Logs the progress every 10 s while it builds the rows.
    """
    per_patient = blocks_from_records(records)
    rows, patient_ids, starts = [], [], []
    first, last = None, None
    last_log = time.monotonic()
    for done, (patient_id, block) in enumerate(per_patient.items(), 1):
        patient_rows, patient_starts = feature_rows(block, size_ms, period_ms)
        rows.append(patient_rows)
        patient_ids.extend([patient_id] * len(patient_starts))
        starts.extend(patient_starts)
        first = _min_or(first, int(block.event_time_ms.min()))
        last = _max_or(last, int(block.event_time_ms.max()))
        if time.monotonic() - last_log >= _PROGRESS_EVERY_SEC:
            last_log = time.monotonic()
            _LOGGER.info(
                "Built features of %d/%d patients", done, len(per_patient)
            )
    _LOGGER.info("Built feature rows for %d patients", len(per_patient))
    width = len(features.FEATURE_NAMES)
    return HistoryTable(
        np.vstack(rows) if rows else np.empty((0, width)),
        patient_ids,
        np.asarray(starts, dtype=np.int64),
        first,
        last,
    )


def _min_or(current: int | None, value: int) -> int:
    return value if current is None else min(current, value)


def _max_or(current: int | None, value: int) -> int:
    return value if current is None else max(current, value)


def history_rows(
    paths: Iterable[str], size_ms: int, period_ms: int
) -> np.ndarray:
    """Feature rows of every patient in the given Avro files."""
    return history_table(paths, size_ms, period_ms).rows


def feature_statistics(rows: np.ndarray) -> dict:
    """Summarise each training feature for explanations and drift.

    Returns:
        By feature name: median, IQR (None when the feature has no data)
        and the reference histogram of `drift.reference_histogram`.
    """
    rows = np.asarray(rows, dtype=np.float64)
    statistics = {}
    for i, name in enumerate(features.FEATURE_NAMES):
        column = rows[:, i]
        present = column[~np.isnan(column)]
        median, iqr = None, None
        if len(present):
            q25, q50, q75 = np.quantile(present, [0.25, 0.5, 0.75])
            median, iqr = float(q50), float(q75 - q25)
        statistics[name] = {
            "median": median,
            "iqr": iqr,
            "histogram": drift.reference_histogram(column),
        }
    return statistics


def train(
    table: HistoryTable,
    size_ms: int,
    period_ms: int,
    source: dict | None = None,
    **hyperparameters,
) -> ModelBundle:
    """Fit a model on a history and describe its training data.

    Args:
        table: The history, from `history_table` or `table_from_records`.
        size_ms: Window size the rows were computed with.
        period_ms: Window period the rows were computed with.
        source: Where the history was read from, as JSON-ready values,
            stored under "source" in the metadata's "data_window". Default
            none.
        **hyperparameters: Passed to `fit`.

    Raises:
        ValueError: As `fit` does.
    """
    bundle = fit(table.rows, **hyperparameters)
    bundle.metadata.update(
        {
            "data_window": {
                "first_event_ms": table.first_event_ms,
                "last_event_ms": table.last_event_ms,
                "patients": len(set(table.patient_ids)),
                "source": source,
            },
            "window_size_ms": size_ms,
            "window_period_ms": period_ms,
        }
    )
    return bundle


def fit(
    rows: np.ndarray,
    version: int = 0,
    n_estimators: int = 200,
    max_samples: int | str = 256,
    contamination: float = 0.02,
    seed: int = 0,
) -> ModelBundle:
    """Fit an Isolation Forest on feature rows.

    Args:
        rows: Training rows in FEATURE_NAMES order; NaN is imputed with
            the column median.
        version: Version to stamp on the bundle; the registry assigns it.
        n_estimators: Number of trees. Default 200.
        max_samples: Rows drawn per tree. Default 256, the original paper's
            sub-sampling size.
        contamination: Expected fraction of anomalous training rows; sets
            the score threshold. Default 0.02.
        seed: Random state, for reproducible models. Default 0.

    Raises:
        ValueError: When there are no rows or a column is entirely NaN.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        raise ValueError("no training rows: the history has no full window")
    with np.errstate(all="ignore"):
        medians = np.nanmedian(rows, axis=0)
        q75, q25 = np.nanpercentile(rows, [75, 25], axis=0)
    empty = [
        name
        for name, m in zip(features.FEATURE_NAMES, medians, strict=False)
        if np.isnan(m)
    ]
    medians = np.where(np.isnan(medians), 0.0, medians)
    scales = np.maximum(np.nan_to_num((q75 - q25) / 1.349), _MIN_SCALE)
    filled = np.where(np.isnan(rows), medians, rows)
    estimator = IsolationForest(
        n_estimators=n_estimators,
        max_samples=min(max_samples, len(rows))
        if isinstance(max_samples, int)
        else max_samples,
        contamination=contamination,
        random_state=seed,
    ).fit(filled)
    scores = -estimator.score_samples(filled)
    threshold = float(np.quantile(scores, 1.0 - contamination))
    return ModelBundle(
        version=version,
        estimator=estimator,
        feature_names=features.FEATURE_NAMES,
        medians=medians,
        scales=scales,
        threshold=threshold,
        metadata={
            "training_rows": int(len(rows)),
            "features_without_data": empty,
            "feature_medians": medians.tolist(),
            "feature_scales": scales.tolist(),
            "feature_statistics": feature_statistics(rows),
            "training_score_quantiles": np.quantile(
                scores, [0.5, 0.9, 0.99]
            ).tolist(),
            "hyperparameters": {
                "n_estimators": n_estimators,
                "max_samples": max_samples,
                "contamination": contamination,
                "seed": seed,
            },
        },
    )
