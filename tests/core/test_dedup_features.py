"""Direct tests of de-duplication and of the feature arithmetic."""

import numpy as np
import pytest

from schemas import decode_payload
from tests.core.helpers import batch_payload
from transforms import dedup, features
from transforms.readings import block_from_batch, concat, split_by_period


def _block(minute=0, **kwargs):
    _, record = decode_payload(batch_payload("p", minute, **kwargs))
    return block_from_batch(record)


def test_dedup_marks_resent_readings():
    seen = dedup.DeviceSeen()
    first, _, _ = dedup.split_new(seen, np.arange(0, 10))
    new, duplicate, too_old = dedup.split_new(seen, np.arange(5, 15))
    assert first.all()
    assert duplicate.tolist() == [True] * 5 + [False] * 5
    assert new.sum() == 5
    assert not too_old.any()


def test_dedup_within_block():
    seen = dedup.DeviceSeen()
    new, duplicate, _ = dedup.split_new(seen, np.array([3, 3, 4]))
    assert new.tolist() == [True, False, True]
    assert duplicate.tolist() == [False, True, False]


def test_dedup_out_of_order_not_duplicate():
    seen = dedup.DeviceSeen()
    dedup.split_new(seen, np.array([10, 12]))
    new, duplicate, _ = dedup.split_new(seen, np.array([11]))
    assert new.tolist() == [True]
    assert not duplicate.any()


def test_dedup_too_old_flagged():
    seen = dedup.DeviceSeen()
    dedup.split_new(seen, np.array([5000]))
    _, _, too_old = dedup.split_new(seen, np.array([10]))
    assert too_old.tolist() == [True]


def test_dedup_state_is_small():
    seen = dedup.DeviceSeen()
    dedup.split_new(seen, np.arange(100_000))
    assert len(seen.packed_bits) == dedup.WINDOW // 8


def test_merge_equals_whole():
    block = concat([_block(0), _block(1, heart_rate=np.linspace(70, 90, 60))])
    baseline = features.no_baseline()
    whole = features.features_of(features.summarize(block, baseline))
    parts = split_by_period(block, 60_000)
    merged = features.merge([features.summarize(p, baseline) for p in parts])
    assert np.allclose(
        features.features_of(merged), whole, equal_nan=True, atol=1e-9
    )


def test_slope_in_bpm_per_minute():
    block = _block(0, heart_rate=np.linspace(60, 60 + 59 / 6, 60))
    row = features.features_of(
        features.summarize(block, features.no_baseline())
    )
    slope = row[features.FEATURE_NAMES.index("hr_slope_bpm_per_min")]
    assert slope == pytest.approx(10.0, rel=1e-6)


def test_poor_quality_readings_ignored():
    block = _block(0, heart_rate=200.0, quality=0.1)
    summary = features.summarize(block, features.no_baseline())
    row = features.features_of(summary)
    assert np.isnan(row[features.FEATURE_NAMES.index("hr_mean_bpm")])
    assert row[features.FEATURE_NAMES.index("good_quality_fraction")] == 0


def test_sliding_windows_cover_each_part_five_times():
    parts = [
        features.summarize(_block(m), features.no_baseline()) for m in range(10)
    ]
    windows = features.sliding_window_summaries(parts, 300_000, 60_000)
    assert len(windows) == 14
    counts = [summary.readings for _, summary in windows]
    assert max(counts) == 300
