"""Train an Isolation Forest from Avro history with the pipeline's features.

History is read from Avro container files of VitalReading or VitalBatch
records. Readings are validated and de-duplicated like the pipeline does,
grouped per patient in event-time order, folded into the rolling baseline
block by block and summarised with `transforms.features.part_summaries`,
then merged into the same sliding windows. The rows that come out are
exactly the rows the pipeline scores.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from sklearn.ensemble import IsolationForest

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
    windows = features.sliding_window_summaries(parts, size_ms, period_ms)
    if not windows:
        return np.empty((0, len(features.FEATURE_NAMES))), []
    rows = np.vstack([features.features_of(s) for _, s in windows])
    return rows, [start for start, _ in windows]


def history_rows(
    paths: Iterable[str], size_ms: int, period_ms: int
) -> np.ndarray:
    """Feature rows of every patient in the given Avro files."""
    records = (record for path in paths for record in read_container(path))
    per_patient = blocks_from_records(records)
    rows = [
        feature_rows(block, size_ms, period_ms)[0]
        for block in per_patient.values()
    ]
    _LOGGER.info("Built feature rows for %d patients", len(per_patient))
    if not rows:
        return np.empty((0, len(features.FEATURE_NAMES)))
    return np.vstack(rows)


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
