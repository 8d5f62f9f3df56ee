"""CPU time of one state-cache sizing call: Beam's function against ours.

Beam's state cache weighs every value it stores. This benchmark times
that call on a patient's state, with the pipeline's modules loaded as in
an SDK harness, for Beam's `statecache.get_deep_size` and for
`transforms.state_cache_sizing.get_deep_size`, alternating in rounds.

    .venv/bin/python -m bench.cache_sizing --calls 200 --rounds 5
"""

import argparse
import statistics
import sys
import time

import numpy as np

import pipelines.vitals_pipeline  # noqa: F401  (loads the SDK's modules)
from bench import common
from transforms import patient_state, state_cache_sizing
from transforms.readings import ReadingBlock


def _patient_state():
    """Return the state of a patient after one minute of readings."""
    dofn = patient_state._TrackPatientDoFn(patient_state.TrackingConfig())
    times = 1_700_000_000_000 + 1000 * np.arange(60, dtype=np.int64)
    values = {
        "heart_rate_bpm": np.full(60, 72.0),
        "spo2_pct": np.full(60, 97.0),
        "rr_interval_ms": np.full(60, 830.0),
        "signal_quality": np.full(60, 0.9),
        "pulse_rate_bpm": np.full(60, 72.0),
        "rr_rmssd_ms": np.full(60, 35.0),
    }
    block = ReadingBlock(
        "patient", "device", np.arange(60, dtype=np.int64), times, values
    )
    state = patient_state.PatientState()
    dofn._observe(state, block)
    return state


def _time_calls(function, value, calls) -> float:
    started = time.process_time()
    for _ in range(calls):
        function(value)
    return (time.process_time() - started) / calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_sizing")
    parser.add_argument(
        "--calls", type=int, default=200, help="Calls per round. Default 200."
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="Rounds. Default 5."
    )
    args = parser.parse_args(argv)
    value = _patient_state()
    assert state_cache_sizing.get_deep_size(
        value
    ) == state_cache_sizing.beam_get_deep_size(value)
    times = {"beam": [], "ours": []}
    for round_number in range(args.rounds):
        common.progress(f"round {round_number + 1}/{args.rounds}")
        times["beam"].append(
            _time_calls(
                state_cache_sizing.beam_get_deep_size, value, args.calls
            )
        )
        times["ours"].append(
            _time_calls(state_cache_sizing.get_deep_size, value, args.calls)
        )
    print(f"modules loaded: {len(sys.modules)}")
    for name, seconds in times.items():
        print(
            f"{name}: best {min(seconds) * 1e6:.0f} us, median "
            f"{statistics.median(seconds) * 1e6:.0f} us per call"
        )
    ratio = min(times["beam"]) / min(times["ours"])
    print(f"ratio (best of rounds): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
