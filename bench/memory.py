"""State size per patient and process memory as the fleet grows.

What it measures, without a runner (the patient-state DoFn is called
directly, as `bench/floor.py` does, on blocks built from simulated
VitalBatch records of 60 readings, skipping Avro decoding):

* the keyed state a runner keeps per patient, encoded with
  `PickleCoder` as the pipeline encodes it. That is the `PatientState`
  of `TrackPatients`, the suppression history of `RaiseAlerts` for a
  patient with alerts of three kinds, and the `Summary` accumulator of
  each open sliding window;
* how that size changes with minutes of readings and with the reading
  rate;
* the resident set size (RSS) of a process that holds the decoded state
  of 1,000, 10,000 and 100,000 patients after one minute of readings,
  each fleet in a fresh subprocess.

    .venv/bin/python -m bench.memory --out out/bench
"""

import argparse
import json
import pathlib
import subprocess
import sys

from apache_beam.coders import PickleCoder

from bench import common, floor
from devices import simulator
from transforms import alerts, features
from transforms.patient_state import TrackingConfig
from transforms.readings import block_from_batch

_FLEETS = (1_000, 10_000, 100_000)
_MINUTES = (1, 10, 30, 60)
_RATES_HZ = (1.0, 5.0)
# Windows of 5 min every 1 min stay open until their end plus the allowed
# lateness of 2 min, so (300 + 120) / 60 = 7 windows per patient are open.
_OPEN_WINDOWS = 7
_CODER = PickleCoder()


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS is missing from /proc/self/status")


def _track(patients, seconds, rate_hz, keep_summaries, seed=7):
    config = simulator.SimulationConfig(
        n_patients=patients,
        duration_s=seconds,
        rate_hz=rate_hz,
        seed=seed,
        batch_size=60,
    )
    # Records are built before the first RSS sample, and summaries are kept
    # only on request, so that the RSS growth is the state alone.
    records = list(simulator.simulate(config).records())
    before_kib = _rss_kib()
    tracker = floor.PatientTracker(TrackingConfig(event_timers=False))
    summaries = []
    for record in records:
        for output in tracker.process(block_from_batch(record)):
            if keep_summaries and not hasattr(output, "tag"):
                summaries.append(output.value[1])
    # Sampled while the records are still referenced, because freeing them
    # lowers the RSS by more than the state adds.
    return tracker, summaries, _rss_kib() - before_kib


def _suppression_history_bytes() -> int:
    dofn = alerts._SuppressRepeatsDoFn(600_000)
    state = floor.DictState()
    for kind, tier in (("tachycardia", "SEVERE"), ("anomaly", "INFO")) + (
        ("desaturation_trend", "MINOR"),
    ):
        event = {"patient_id": "p", "kind": kind, "tier": tier}
        event.update(event_time=0, window_start=0)
        list(dofn.process(("p", event), sent=state))
    return len(_CODER.encode(state.read()))


def state_sizes(rate_hz: float, minutes: int, patients: int = 50) -> dict:
    """Encoded state bytes per patient after `minutes` at `rate_hz`."""
    tracker, summaries, _ = _track(patients, minutes * 60, rate_hz, True)
    sizes = sorted(
        len(_CODER.encode(state.read())) for state in tracker.states.values()
    )
    window = features.merge(summaries[-5:])
    window_bytes = len(_CODER.encode(window))
    suppression = _suppression_history_bytes()
    median = sizes[len(sizes) // 2]
    return {
        "rate_hz": rate_hz,
        "minutes": minutes,
        "patient_state_median": median,
        "patient_state_max": sizes[-1],
        "window_accumulator": window_bytes,
        "open_windows": _OPEN_WINDOWS,
        "suppression_history": suppression,
        "total_median": median + _OPEN_WINDOWS * window_bytes + suppression,
    }


def fleet_rss(patients: int) -> dict:
    """RSS growth of one process that tracks `patients` for one minute."""
    tracker, _, growth_kib = _track(patients, 60, 1.0, False)
    return {
        "patients": patients,
        "rss_growth_kib": growth_kib,
        "per_patient_bytes": round(growth_kib * 1024 / patients),
        "tracked": len(tracker.states),
    }


def _fleet_in_subprocess(patients: int) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--fleet", str(patients)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument(
        "--out", default="out/bench", help="Results folder. Default out/bench."
    )
    parser.add_argument(
        "--fleet",
        type=int,
        default=0,
        help="Internal: measure RSS for this many patients and print JSON.",
    )
    parser.add_argument(
        "--skip_state",
        action="store_true",
        help="Measure only the fleet RSS. Default: measure both.",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Measure state sizes and fleet RSS; write out/bench/memory.json."""
    args = _parse(argv)
    if args.fleet:
        print(json.dumps(fleet_rss(args.fleet)))
        return 0
    results = {"machine": common.machine(), "state": [], "fleets": []}
    for rate_hz in _RATES_HZ if not args.skip_state else ():
        for minutes in _MINUTES:
            common.progress(f"state size: {minutes} min at {rate_hz:g} Hz")
            results["state"].append(state_sizes(rate_hz, minutes))
    for patients in _FLEETS:
        common.progress(f"RSS: {patients} patients")
        results["fleets"].append(_fleet_in_subprocess(patients))
    out = pathlib.Path(args.out)
    common.write_json(out / "memory.json", results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
