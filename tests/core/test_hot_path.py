"""Vectorised hot-path code against plain per-reading references.

The fast checks, the baseline medians, the block summaries and the merge
of summaries each evaluate many channels or conditions in one NumPy pass.
These tests run them on random blocks with gaps, poor-quality readings
and absent channels, and compare with simple loops that state the rules
reading by reading. The sums must match exactly, because features feed
the model's threshold.
"""

import contextlib
import math
import pickle

import numpy as np
import objsize
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.worker import statecache
from apache_beam.utils.timestamp import Timestamp

from bench.floor import DictState
from schemas import encode_batch, encode_reading
from tests.core.helpers import T0_MS
from transforms import dedup, fast_checks, features, validate
from transforms import readings as reading_blocks
from transforms.baseline import (
    SCALE_FLOORS,
    WARMUP_MIN,
    Baseline,
    _row_medians,
)
from transforms.parse import DEAD_LETTER_TAG, _ParseVitalsDoFn
from transforms.patient_state import (
    EVENTS_TAG,
    LATE_TAG,
    PatientState,
    TrackingConfig,
    _TrackPatientDoFn,
)
from transforms.readings import (
    CHANNELS,
    ReadingBlock,
    sort_by_time,
    split_by_period,
)

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
            condition_met = condition.test(
                block.values[condition.channel],
                baseline,
                *(block.values[name] for name in condition.requires),
            )
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


# Small blocks: the per-reading Python path against the block path.
#
# Streaming sources deliver one reading per block, and blocks of up to
# SMALL_BLOCK_READINGS readings take a per-reading path in every hot step.
# The tests below feed the same inputs to both paths and require equal
# results: masks, events, run state, baselines and bit-identical sums.

_LEVELS = {
    "heart_rate_bpm": (30.0, 75.0, 150.0, np.nan),
    "pulse_rate_bpm": (33.0, 80.0, 145.0, np.nan),
    "spo2_pct": (80.0, 88.0, 97.0, np.nan),
    "rr_interval_ms": (400.0, 800.0, np.nan),
    "rr_rmssd_ms": (20.0, 60.0, np.nan),
    "signal_quality": (0.2, 0.5, 0.9, 0.9, 0.9),
}
# Steps between readings: mostly 1 s, with equal times, jitter and gaps.
_STEPS_MS = (1000, 1000, 1000, 1000, 0, 400, 2500, 61_000)


@contextlib.contextmanager
def _block_path():
    """Turn the small-block path off, so every block takes the NumPy path."""
    limit = reading_blocks.SMALL_BLOCK_READINGS
    reading_blocks.SMALL_BLOCK_READINGS = 0
    try:
        yield
    finally:
        reading_blocks.SMALL_BLOCK_READINGS = limit


def _on_both_paths(function):
    """Return (block path result, small path result) of `function()`."""
    with _block_path():
        expected = function()
    return expected, function()


def _episodes(rng, count: int, start_ms: int = T0_MS) -> ReadingBlock:
    """Readings that hold each level for a while, so conditions last."""
    values = {}
    for name in CHANNELS:
        column = np.empty(count)
        filled = 0
        while filled < count:
            length = int(rng.integers(1, 15 if rng.random() < 0.9 else 300))
            column[filled : filled + length] = rng.choice(_LEVELS[name])
            filled += length
        noise = rng.normal(0.0, 2.0, count).round(int(rng.integers(0, 3)))
        if name != "signal_quality":
            column += noise
        values[name] = column
    times = start_ms + np.cumsum(rng.choice(_STEPS_MS, count))
    return ReadingBlock(
        "patient-a",
        "device-a",
        np.arange(count, dtype=np.int64),
        times.astype(np.int64),
        values,
    )


def _small_blocks(rng, stream: ReadingBlock, max_size: int) -> list:
    """Cut a stream into consecutive blocks of 0 to `max_size` readings."""
    blocks, first = [], 0
    while first < len(stream):
        size = int(rng.integers(0, max_size + 1))
        blocks.append(stream.take(slice(first, first + size)))
        first += size
    return blocks


def test_small_block_limit_keeps_sums_sequential():
    # NumPy sums fewer than 8 float64 values one after another, as the
    # per-reading summaries do. Larger blocks would need NumPy's pairwise
    # order.
    assert 1 <= reading_blocks.SMALL_BLOCK_READINGS <= 7
    block = _episodes(
        np.random.default_rng(20), reading_blocks.SMALL_BLOCK_READINGS
    )
    assert reading_blocks.is_small(block)
    assert not reading_blocks.is_small(_episodes(np.random.default_rng(20), 8))


@pytest.mark.parametrize("seed", range(4))
def test_small_fast_checks_match_block_path(seed):
    rng = np.random.default_rng(100 + seed)
    limit = reading_blocks.SMALL_BLOCK_READINGS
    fired = 0
    for _ in range(40):
        baseline = _WARM_BASELINE if rng.random() < 0.5 else None
        baseline = features.no_baseline() if baseline is None else baseline
        has_ecg = bool(rng.random() < 0.8)
        stream = _episodes(rng, int(rng.integers(20, 200)))
        block_runs, small_runs = {}, {}
        for block in _small_blocks(rng, stream, limit):
            with _block_path():
                expected = fast_checks.check(
                    block, baseline, block_runs, has_ecg
                )
            events = fast_checks.check(block, baseline, small_runs, has_ecg)
            assert events == expected
            assert small_runs == block_runs
            fired += len(events)
    # The streams must raise events, or the comparison proves little.
    assert fired > 10


@pytest.mark.parametrize("seed", range(3))
def test_small_baseline_matches_block_path(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(20):
        stream = _episodes(rng, int(rng.integers(50, 900)))
        baselines = {"block": Baseline(), "small": Baseline()}
        for block in _small_blocks(
            rng, stream, reading_blocks.SMALL_BLOCK_READINGS
        ):
            with _block_path():
                baselines["block"].update(block)
                expected = baselines["block"].snapshot()
            baselines["small"].update(block)
            snapshot = baselines["small"].snapshot()
            np.testing.assert_array_equal(snapshot, expected)
        block_path, small_path = baselines["block"], baselines["small"]
        assert small_path.center.tobytes() == block_path.center.tobytes()
        assert small_path.scale.tobytes() == block_path.scale.tobytes()
        assert (
            small_path.minutes_seen.tobytes()
            == block_path.minutes_seen.tobytes()
        )
        assert small_path.last_update_ms == block_path.last_update_ms


def _summary_fields(summary) -> tuple:
    return (
        summary.t_ref_ms,
        summary.t_last_ms,
        summary.stats.shape,
        summary.stats.tobytes(),
        summary.readings,
        summary.good_readings,
        summary.baseline.tobytes(),
    )


@pytest.mark.parametrize("seed", range(3))
def test_small_summaries_match_block_path(seed):
    rng = np.random.default_rng(300 + seed)
    limit = reading_blocks.SMALL_BLOCK_READINGS
    for _ in range(300):
        block = _episodes(rng, int(rng.integers(1, limit + 1)))
        if rng.random() < 0.3:
            block = block.take(rng.permutation(len(block)))
        # Values with many digits make the order of additions matter.
        for name in features.STAT_CHANNELS:
            block.values[name] = block.values[name] * (1 + rng.random() / 7)
        baseline = _WARM_BASELINE if rng.random() < 0.5 else None
        baseline = features.no_baseline() if baseline is None else baseline
        expected, parts = _on_both_paths(
            lambda block=block, baseline=baseline: features.part_summaries(
                block, baseline, 60_000
            )
        )
        assert [_summary_fields(p) for p in parts] == [
            _summary_fields(p) for p in expected
        ]


def test_small_sort_split_match_block_path():
    rng = np.random.default_rng(400)
    for _ in range(300):
        block = _episodes(rng, int(rng.integers(0, 8)))
        block = block.take(rng.permutation(len(block)))
        expected, ordered = _on_both_paths(
            lambda block=block: sort_by_time(block)
        )
        assert ordered.event_time_ms.tolist() == expected.event_time_ms.tolist()
        assert ordered.sequence.tolist() == expected.sequence.tolist()
        expected, parts = _on_both_paths(
            lambda block=block: split_by_period(block, 60_000)
        )
        assert [p.sequence.tolist() for p in parts] == [
            p.sequence.tolist() for p in expected
        ]


@pytest.mark.parametrize("seed", range(3))
def test_small_dedup_matches_block_path(seed):
    rng = np.random.default_rng(500 + seed)
    seen = {"block": dedup.DeviceSeen(), "small": dedup.DeviceSeen()}
    latest = 0
    for _ in range(3000):
        size = int(rng.integers(0, reading_blocks.SMALL_BLOCK_READINGS + 1))
        kind = rng.choice(["next", "resend", "reorder", "jump", "too_old"])
        if kind == "next":
            sequence = latest + 1 + np.arange(size)
        elif kind == "resend":
            sequence = latest - rng.integers(0, 40, size)
        elif kind == "reorder":
            sequence = latest + rng.integers(-5, 6, size)
        elif kind == "jump":
            sequence = latest + rng.integers(1, 3000) + np.arange(size)
        else:
            sequence = latest - dedup.WINDOW - rng.integers(0, 50, size)
        sequence = sequence.astype(np.int64)
        with _block_path():
            expected = dedup.split_new(seen["block"], sequence)
        masks = dedup.split_new(seen["small"], sequence)
        for got, want in zip(masks, expected, strict=True):
            assert got.dtype == want.dtype
            assert got.tolist() == want.tolist()
        assert seen["small"] == seen["block"]
        latest = max(latest, seen["block"].max_sequence)


def _faulty_block(rng, count: int) -> ReadingBlock:
    """A block whose readings may be out of range, unset or in the future."""
    block = _episodes(rng, count, validate.MIN_EVENT_TIME_MS + 10**12)
    for name, (low, high) in validate.VALID_RANGES.items():
        column = np.clip(block.values[name], low, high)
        wrong = rng.random(count) < 0.05
        column[wrong] = rng.choice([low - 1.0, high + 1.0, np.nan], wrong.sum())
        block.values[name] = column
    shift = rng.choice([0, 0, 0, 10**9, -(10**12) - 1], count)
    block.event_time_ms = block.event_time_ms + shift
    return block


def test_small_validation_matches_block_path():
    rng = np.random.default_rng(600)
    invalid = 0
    for _ in range(1000):
        block = _faulty_block(rng, int(rng.integers(0, 8)))
        nan_masks = {}
        if rng.random() < 0.1 and len(block):
            nan_masks["spo2_pct"] = rng.random(len(block)) < 0.5
        now_ms = int(block.event_time_ms.min(initial=T0_MS)) + 10**8
        expected, result = _on_both_paths(
            lambda block=block, masks=nan_masks, now_ms=now_ms: (
                validate.invalid_reasons(block, masks, now_ms)
            )
        )
        assert result[0].tolist() == expected[0].tolist()
        assert result[1] == expected[1]
        invalid += len(result[1])
    assert invalid > 100


class _RecordingTimer:
    """Timer stand-in that records each time it is set to."""

    def __init__(self):
        self.times = []

    def set(self, timestamp):
        self.times.append(timestamp.micros)


def _output_fields(output) -> tuple:
    """Turn one DoFn output into comparable plain values."""
    if isinstance(output, TaggedOutput):
        value = output.value
        if output.tag == EVENTS_TAG:
            return (output.tag, value.timestamp.micros, value.value)
        return (output.tag, value)
    patient_id, summary = output.value
    return ("main", output.timestamp.micros, patient_id) + _summary_fields(
        summary
    )


def _delivered(rng, stream: ReadingBlock) -> list:
    """Deliver a stream as small blocks, with resends and delays.

    A block held back for hundreds of blocks arrives late, or so far
    behind that its sequence numbers are too old to deduplicate.
    """
    limit = reading_blocks.SMALL_BLOCK_READINGS
    blocks = [b for b in _small_blocks(rng, stream, limit) if len(b)]
    slots = [[] for _ in blocks]
    for index, block in enumerate(blocks):
        if rng.random() < 0.2:
            block = block.take(rng.permutation(len(block)))
        slot = index
        if rng.random() < 0.05:
            slot = min(index + int(rng.integers(5, 600)), len(blocks) - 1)
        slots[slot].append(block)
        if rng.random() < 0.1:
            slots[slot].append(block)
    return [block for slot in slots for block in slot]


def _track(blocks, expiry_every: int) -> tuple[list, list, list, bytes]:
    """Run the patient-state DoFn over blocks, advancing its frontier."""
    config = TrackingConfig(allowed_lateness_ms=60_000)
    dofn = _TrackPatientDoFn(config)
    state = DictState()
    silence, expiry = _RecordingTimer(), _RecordingTimer()
    outputs = []
    for index, block in enumerate(blocks):
        element = (block.patient_id, block)
        for output in dofn.process(element, state, silence, expiry):
            outputs.append(_output_fields(output))
        if index % expiry_every == 0 and state.value is not None:
            # Fire the expiry callback on a period boundary, as the runner
            # does while the watermark moves, so delayed blocks arrive late.
            period_ms = config.window_period_ms
            now_ms = (state.value.last_event_ms // period_ms - 1) * period_ms
            fired = Timestamp(micros=now_ms * 1000)
            dofn._on_expiry(fired, state, expiry)
    return outputs, silence.times, expiry.times, pickle.dumps(state.value)


@pytest.mark.parametrize("seed", range(4))
def test_small_patient_state_matches_block_path(seed):
    # The whole stateful step: duplicates, out-of-order and late readings,
    # gaps, poor quality and condition runs across block boundaries.
    rng = np.random.default_rng(700 + seed)
    stream = _episodes(rng, 1500)
    stream.sequence = stream.sequence + 2000 * seed
    blocks = _delivered(rng, stream)
    expiry_every = int(rng.integers(5, 40))
    expected = _on_both_paths(lambda: _track(blocks, expiry_every))[0]
    outputs, silence, expiry, state = _track(blocks, expiry_every)
    kinds = {
        output[1]["reason"] if output[0] == LATE_TAG else output[0]
        for output in expected[0]
    }
    assert {"main", EVENTS_TAG, "late", "too_old_to_deduplicate"} <= kinds
    for index, output in enumerate(outputs):
        assert output == expected[0][index], f"output {index} differs"
    assert len(outputs) == len(expected[0])
    assert silence == expected[1]
    assert expiry == expected[2]
    assert state == expected[3]


def _reading_record(rng, sequence: int, time_ms: int) -> dict:
    record = {
        "patient_id": "patient-a" if rng.random() < 0.98 else "",
        "device_id": "device-a",
        "sequence": sequence,
        "event_time": time_ms,
        "firmware": "1.0",
    }
    for name in CHANNELS:
        record[name] = float(rng.choice(_LEVELS[name]))
        if math.isnan(record[name]) and rng.random() < 0.7:
            record[name] = None
    fault = rng.random()
    if fault < 0.03:
        record["spo2_pct"] = 120.0
    elif fault < 0.06:
        record["signal_quality"] = math.nan
    elif fault < 0.08:
        record["event_time"] = time_ms + 10**9
    elif fault < 0.1:
        record["event_time"] = 10**11
    return record


def _batch_record(rng, sequence: int, time_ms: int) -> dict:
    count = int(rng.integers(1, reading_blocks.SMALL_BLOCK_READINGS + 1))
    record = {
        "patient_id": "patient-a",
        "device_id": "device-a",
        "first_sequence": sequence,
        "start_time": time_ms,
        "interval_ms": 1000,
        "firmware": "1.0",
    }
    for name in CHANNELS:
        column = rng.choice(_LEVELS[name], count)
        column[rng.random(count) < 0.03] = 500.0
        record[name] = column.tolist() if rng.random() < 0.9 else []
    if not record["signal_quality"]:
        record["signal_quality"] = [0.9] * count
    return record


def _parse_outputs(payloads) -> list:
    dofn = _ParseVitalsDoFn(None, validate.MAX_FUTURE_SKEW_MS, lambda: 2e9)
    dofn.setup()
    outputs = []
    for payload in payloads:
        for output in dofn.process(("test", payload)):
            if isinstance(output, TaggedOutput):
                outputs.append((output.tag, output.value))
                continue
            outputs.append(
                (
                    output.patient_id,
                    output.device_id,
                    output.sequence.tolist(),
                    output.event_time_ms.tolist(),
                    {n: c.tobytes() for n, c in output.values.items()},
                    output.source,
                )
            )
    return outputs


def test_small_parse_matches_block_path():
    rng = np.random.default_rng(800)
    payloads = []
    for sequence in range(1500):
        time_ms = T0_MS + sequence * 1000
        if rng.random() < 0.8:
            payloads.append(
                encode_reading(_reading_record(rng, sequence, time_ms))
            )
        else:
            payloads.append(encode_batch(_batch_record(rng, sequence, time_ms)))
    expected, outputs = _on_both_paths(lambda: _parse_outputs(payloads))
    assert {type(output[0]) for output in outputs} == {str}
    assert any(output[0] == DEAD_LETTER_TAG for output in outputs)
    assert outputs == expected


def test_baseline_snapshot_matches_array_form():
    # snapshot() builds its result from Python floats on every block, and
    # must keep the rule that the array form below states.
    rng = np.random.default_rng(900)
    for _ in range(300):
        baseline = Baseline()
        baseline.center = rng.normal(80.0, 20.0, 3)
        baseline.scale = rng.choice([0.5, 2.0, 9.0, np.nan], 3)
        baseline.minutes_seen = rng.choice([0.0, 9.9, 10.0, 30.0], 3)
        expected = np.column_stack(
            [baseline.center, np.maximum(baseline.scale, SCALE_FLOORS)]
        )
        expected[baseline.minutes_seen < WARMUP_MIN] = np.nan
        snapshot = baseline.snapshot()
        assert snapshot.shape == expected.shape
        assert snapshot.tobytes() == expected.tobytes()
