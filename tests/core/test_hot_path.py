"""Vectorised hot-path code against plain per-reading references.

The fast checks, the baseline medians, the block summaries and the merge
of summaries each evaluate many channels or conditions in one NumPy pass.
These tests run them on random blocks with gaps, poor-quality readings
and absent channels, and compare with simple loops that state the rules
reading by reading. The sums must match exactly, because features feed
the model's threshold.
"""

import numpy as np
import objsize
import pytest
from apache_beam.runners.worker import statecache

from transforms import dedup, fast_checks, features, validate
from transforms.baseline import Baseline, _row_medians
from transforms.patient_state import PatientState
from transforms.readings import CHANNELS, ReadingBlock, sort_by_time

_NO_RUN = -1
_WARM_BASELINE = np.array([[75.0, 5.0], [95.0, 1.0], [30.0, 8.0]])
_CENTERS = {"heart_rate_bpm": 80.0, "pulse_rate_bpm": 80.0, "spo2_pct": 90.0}
_SPREADS = {"heart_rate_bpm": 50.0, "pulse_rate_bpm": 50.0, "spo2_pct": 6.0}


def _random_block(rng, start_ms: int, readings: int) -> ReadingBlock:
    values = {}
    for name in CHANNELS:
        center = _CENTERS.get(name, 0.7)
        spread = _SPREADS.get(name, 0.3)
        column = center + rng.normal(0.0, spread, readings)
        absent = rng.random(readings) < rng.choice([0.0, 0.1, 0.5, 1.0])
        column[absent] = np.nan
        values[name] = column.round(int(rng.integers(0, 4)))
    times = start_ms + np.cumsum(rng.integers(500, 1500, readings))
    return ReadingBlock(
        "patient-a",
        "device-a",
        np.arange(readings, dtype=np.int64),
        times.astype(np.int64),
        values,
    )


def _reference_check(block, baseline, runs, has_ecg) -> list[tuple]:
    """Apply the sustained-condition rules one reading at a time."""
    events = []
    warm = not np.isnan(baseline[0, 0])
    for number, condition in enumerate(fast_checks.CONDITIONS):
        if condition.needs_baseline and not warm:
            continue
        start, fired = runs.get(number, (_NO_RUN, _NO_RUN))
        judged_any, first_event = False, None
        with np.errstate(invalid="ignore"):
            condition_met = condition.test(block, baseline)
        for i in range(len(block)):
            quality = block.values["signal_quality"][i]
            if not quality >= features.MIN_SIGNAL_QUALITY:
                continue
            if condition.kind == "asystole":
                if not has_ecg:
                    continue
            elif any(
                np.isnan(block.values[name][i])
                for name in (condition.channel, *condition.requires)
            ):
                continue
            judged_any = True
            if not condition_met[i]:
                start, fired = _NO_RUN, _NO_RUN
                continue
            time_ms = int(block.event_time_ms[i])
            if start == _NO_RUN:
                start = time_ms
            sustained = time_ms - start >= condition.sustain_ms
            # Only the first run that fires in a block raises an event and
            # counts as fired. A later run fires in the next block.
            if sustained and start != fired and first_event is None:
                fired = start
                first_event = (condition.kind, condition.tier, time_ms, start)
        if not judged_any:
            continue
        runs[number] = (start, fired if start != _NO_RUN else _NO_RUN)
        seen = {event[:2] for event in events}
        if first_event is not None and first_event[:2] not in seen:
            events.append(first_event)
    return events


def _event_keys(events) -> list[tuple]:
    return [
        (e["kind"], e["tier"], e["event_time"], e["window_start"])
        for e in events
    ]


@pytest.mark.parametrize("seed", range(4))
def test_fast_checks_match_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        warm = rng.random() < 0.5
        baseline = _WARM_BASELINE if warm else features.no_baseline()
        has_ecg = bool(rng.random() < 0.8)
        runs, reference_runs = {}, {}
        start_ms = 0
        for _ in range(5):
            block = _random_block(rng, start_ms, int(rng.integers(0, 40)))
            if len(block):
                start_ms = int(block.event_time_ms[-1])
            events = fast_checks.check(block, baseline, runs, has_ecg)
            expected = _reference_check(
                block, baseline, reference_runs, has_ecg
            )
            assert _event_keys(events) == expected
            assert runs == reference_runs


def test_fast_checks_skip_unjudged_readings():
    # Poor-quality readings inside a bradycardia run neither break nor
    # extend it, so the run started at the first reading still fires.
    rng = np.random.default_rng(0)
    block = _random_block(rng, 0, 10)
    block.event_time_ms = np.arange(10, dtype=np.int64) * 1000
    block.values["heart_rate_bpm"][:] = 30.0
    block.values["signal_quality"][:] = 0.9
    block.values["signal_quality"][2:5] = 0.1
    events = fast_checks.check(block, features.no_baseline(), {}, True)
    brady = [e for e in events if e["kind"] == "bradycardia"]
    assert len(brady) == 1
    assert brady[0]["window_start"] == 0
    assert brady[0]["event_time"] == 5000


def test_row_medians_match_numpy():
    rng = np.random.default_rng(3)
    for readings in (1, 2, 7, 60, 61):
        matrix = rng.normal(80.0, 20.0, (3, readings)).round(1)
        matrix[rng.random(matrix.shape) < 0.3] = np.nan
        matrix[2] = np.nan
        medians = _row_medians(matrix)
        for row, median in zip(matrix, medians, strict=True):
            present = row[~np.isnan(row)]
            if len(present) == 0:
                assert median is None
            else:
                assert median == float(np.median(present))


def test_baseline_ignores_absent_channel():
    rng = np.random.default_rng(4)
    block = _random_block(rng, 0, 60)
    block.values["signal_quality"][:] = 0.9
    block.values["spo2_pct"][:] = np.nan
    baseline = Baseline()
    baseline.update(block)
    assert not np.isnan(baseline.center[0])
    assert np.isnan(baseline.center[1])


def _reference_stats(block) -> np.ndarray:
    good = block.values["signal_quality"] >= features.MIN_SIGNAL_QUALITY
    t_ref = int(block.event_time_ms.min())
    t = (block.event_time_ms[good] - t_ref) / 60_000.0
    rows = []
    for name in features.STAT_CHANNELS:
        x = block.values[name][good]
        present = ~np.isnan(x)
        rows.append(features._channel_stats(t[present], x[present]))
    return np.vstack(rows)


def test_summarize_matches_per_channel_stats():
    rng = np.random.default_rng(5)
    for _ in range(300):
        block = _random_block(rng, 0, int(rng.integers(1, 90)))
        summary = features.summarize(block, features.no_baseline())
        np.testing.assert_array_equal(summary.stats, _reference_stats(block))


def _pairwise_merge(first, second) -> np.ndarray:
    """Merge two summaries' statistics the way one CombineFn step does."""
    t_ref = min(first.t_ref_ms, second.t_ref_ms)
    stats = np.zeros_like(first.stats)
    stats[:, 3], stats[:, 4] = np.inf, -np.inf
    for summary in (first, second):
        shift = (summary.t_ref_ms - t_ref) / 60_000.0
        s = summary.stats
        n, sum_x, sum_t = s[:, 0], s[:, 1], s[:, 5]
        for column, value in (
            (0, n),
            (1, sum_x),
            (2, s[:, 2]),
            (5, sum_t + n * shift),
            (6, s[:, 6] + 2 * shift * sum_t + n * shift**2),
            (7, s[:, 7] + shift * sum_x),
        ):
            stats[:, column] += value
        stats[:, 3] = np.minimum(stats[:, 3], s[:, 3])
        stats[:, 4] = np.maximum(stats[:, 4], s[:, 4])
    return stats


def test_merge_of_two_matches_reference():
    rng = np.random.default_rng(6)
    for _ in range(200):
        first = _random_block(rng, int(rng.integers(0, 10**6)), 30)
        second = _random_block(rng, int(rng.integers(0, 10**6)), 30)
        baseline = features.no_baseline()
        parts = [features.summarize(b, baseline) for b in (first, second)]
        merged = features.merge(parts)
        np.testing.assert_array_equal(merged.stats, _pairwise_merge(*parts))
        assert merged.t_ref_ms == min(p.t_ref_ms for p in parts)
        assert merged.readings == 60


def test_sort_by_time_keeps_sorted_block():
    rng = np.random.default_rng(7)
    block = _random_block(rng, 0, 20)
    assert sort_by_time(block) is block
    shuffled = block.take(rng.permutation(20))
    ordered = sort_by_time(shuffled)
    assert ordered.event_time_ms.tolist() == block.event_time_ms.tolist()


def test_dedup_rising_block_after_gap():
    seen = dedup.DeviceSeen()
    dedup.split_new(seen, np.arange(0, 10))
    new, duplicate, too_old = dedup.split_new(seen, np.arange(5000, 5010))
    assert new.all()
    assert not duplicate.any()
    assert not too_old.any()
    again, resent, _ = dedup.split_new(seen, np.arange(5005, 5015))
    assert resent.tolist() == [True] * 5 + [False] * 5
    assert again.sum() == 5


def test_validate_accepts_clean_block():
    rng = np.random.default_rng(8)
    block = _random_block(rng, validate.MIN_EVENT_TIME_MS, 30)
    for name, (low, high) in validate.VALID_RANGES.items():
        block.values[name] = np.clip(block.values[name], low, high)
    block.values["signal_quality"] = np.full(30, 0.9)
    now_ms = int(block.event_time_ms[-1])
    valid, reasons = validate.invalid_reasons(block, {}, now_ms)
    assert valid.all()
    assert reasons == []


def _traversed(value) -> list:
    return list(
        objsize.traverse_bfs(
            value,
            get_referents_func=statecache._get_referents_func,
            filter_func=statecache._filter_func,
        )
    )


def test_patient_state_cache_walk_is_small():
    # Beam's state cache measures every cached value with objsize. The walk
    # must stay inside the state: no classes, functions or modules.
    patient = PatientState()
    for device in range(3):
        seen = patient.devices.setdefault(f"d{device}", dedup.DeviceSeen())
        dedup.split_new(seen, np.arange(0, 600))
    patient.runs = {number: (1, -1) for number in range(8)}
    objects = _traversed([patient])
    kinds = {type(o).__name__ for o in objects}
    assert len(objects) < 60
    assert not kinds & {"type", "module", "function"}
    assert statecache.get_deep_size([patient]) < 4096
