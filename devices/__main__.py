"""Command line for the device-side tools.

Examples::

    python -m devices replay --out out/replay
    python -m devices replay --datasets mitdb --records 208 --payloads
    python -m devices simulate --n_patients 1000 --duration_s 600 --seed 7
    python -m devices simulate --batch_size 60 --out out/simulate-batches

Run ``python -m devices replay --help`` or ``simulate --help`` for every
option with its unit and default.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import sys
import time

from devices import labels, simulator

# Help text per SimulationConfig field; the default is appended.
_SIMULATE_HELP = {
    "n_patients": "Number of simulated patients, each with one device.",
    "duration_s": "Length of the simulated run, in seconds.",
    "rate_hz": "Readings per second of every device, in hertz.",
    "seed": "Seed of the random generator; the same seed gives the same "
    "output.",
    "start_epoch_ms": "Event time of the first reading, in UTC "
    "milliseconds since the epoch.",
    "firmware": "Firmware string written into every record.",
    "batch_size": "Readings per VitalBatch record; unset writes one "
    "VitalReading per reading.",
    "tachycardia_probability": "Probability that a patient has a "
    "tachycardia episode (130-170 bpm), 0 to 1.",
    "bradycardia_probability": "Probability of a bradycardia episode "
    "(32-45 bpm), 0 to 1.",
    "desaturation_probability": "Probability of a desaturation episode "
    "(SpO2 80-88 %%), 0 to 1.",
    "irregular_rhythm_probability": "Probability of an AF-like irregular "
    "rhythm episode (RMSSD 100-250 ms), 0 to 1.",
    "sensor_off_probability": "Probability of a sensor-off episode (no "
    "readings), 0 to 1.",
    "motion_artifact_probability": "Probability of a motion-artefact "
    "episode (signal quality 0.05-0.4, noisy rates), 0 to 1.",
    "episode_min_s": "Shortest episode, in seconds.",
    "episode_max_s": "Longest episode, in seconds.",
    "duplicate_fraction": "Fraction of delivery units sent twice, 0 to 1.",
    "duplicate_max_delay_s": "Longest delay of a duplicate after the "
    "original, in seconds.",
    "out_of_order_fraction": "Fraction of delivery units delivered after "
    "the next unit of the same device, 0 to about 0.4.",
    "out_of_order_max_delay_s": "Longest delay of a reordered unit after "
    "that next unit, in seconds.",
    "late_device_fraction": "Fraction of devices that deliver one chunk "
    "late, 0 to 1.",
    "late_chunk_s": "Length of a late chunk, in seconds of readings.",
    "late_delay_s": "Delivery delay of a late chunk, in seconds.",
    "clock_skew_device_fraction": "Fraction of devices whose clock is "
    "off, 0 to 1.",
    "clock_skew_max_s": "Largest clock offset, in seconds, either sign.",
    "invalid_fraction": "Fraction of readings made invalid (NaN heart "
    "rate, SpO2 250 %%, heart rate 0 or a timestamp a day ahead), 0 to 1.",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devices",
        description="Replay labelled recordings or simulate wearables.",
    )
    parser.add_argument(
        "--log_level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging level. Default INFO.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_replay_parser(commands)
    _add_simulate_parser(commands)
    return parser


def _add_replay_parser(commands) -> None:
    replay = commands.add_parser(
        "replay",
        help="Turn WFDB recordings into per-second VitalReading records.",
        description="Replay WFDB recordings as a wearable's edge processor "
        "would, and write episodes.jsonl with their ground-truth episodes.",
    )
    replay.add_argument(
        "--data",
        default=None,
        help="Folder that contains the data-set folders. Default "
        f"${labels.DATA_DIR_ENV}, else ../shared/data relative to the "
        "repository root.",
    )
    replay.add_argument(
        "--datasets",
        nargs="+",
        default=list(labels.DATASETS),
        choices=list(labels.DATASETS),
        help=f"Data sets to replay. Default all: {' '.join(labels.DATASETS)}.",
    )
    replay.add_argument(
        "--records",
        nargs="+",
        default=None,
        help="Record names to replay, for example 208 a185l. Default every "
        "record of the chosen data sets.",
    )
    replay.add_argument(
        "--out", default="out/replay", help="Output folder. Default out/replay."
    )
    replay.add_argument(
        "--start_time",
        default="2026-01-01T00:00:00Z",
        help="Event time of each record's second 0, ISO 8601 in UTC. "
        "Default 2026-01-01T00:00:00Z.",
    )
    replay.add_argument(
        "--batch_seconds",
        type=int,
        default=60,
        help="Readings per VitalBatch record, in seconds; 0 writes no batch "
        "file. Default 60.",
    )
    replay.add_argument(
        "--payloads",
        action="store_true",
        help="Also write <device>.payloads: single-object Avro payloads, "
        "each preceded by its length as 4-byte big-endian. Default off.",
    )
    replay.add_argument(
        "--firmware",
        default="edge-replay-1",
        help="Firmware string for every record. Default edge-replay-1.",
    )
    replay.set_defaults(run=_run_replay)


def _add_simulate_parser(commands) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="Simulate wearables with labelled episodes and faults.",
        description="Write records in delivery order to readings.avro or "
        "batches.avro, and the injected episodes and faults to "
        "ground_truth.jsonl.",
    )
    for field in dataclasses.fields(simulator.SimulationConfig):
        # batch_size is the one optional field, typed int | None.
        kind = field.type if field.type in (int, float, str) else int
        default = "unset" if field.default is None else field.default
        simulate.add_argument(
            f"--{field.name}",
            type=kind,
            default=field.default,
            help=f"{_SIMULATE_HELP[field.name]} Default {default}.",
        )
    simulate.add_argument(
        "--out",
        default="out/simulate",
        help="Output folder. Default out/simulate.",
    )
    simulate.add_argument(
        "--payloads",
        action="store_true",
        help="Also write the records as single-object Avro payloads, each "
        "preceded by its length as 4-byte big-endian. Default off.",
    )
    simulate.set_defaults(run=_run_simulate)


def _parse_utc_ms(text: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(
            f"invalid --start_time {text!r}: expected ISO 8601 such as "
            "2026-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return round(moment.timestamp() * 1000)


def _run_replay(args) -> None:
    # Imported here so that `simulate` works without neurokit2 and wfdb.
    from devices import edge_replay

    start_ms = _parse_utc_ms(args.start_time)
    recordings = labels.list_recordings(args.data, tuple(args.datasets))
    if args.records:
        recordings = [r for r in recordings if r.name in set(args.records)]
        missing = set(args.records) - {r.name for r in recordings}
        if missing:
            raise SystemExit(
                f"records not found in {args.datasets}: {sorted(missing)}"
            )
    started = time.perf_counter()
    for recording in recordings:
        result = edge_replay.replay_record(recording, start_ms, args.firmware)
        edge_replay.write_replay(
            result, args.out, args.batch_seconds or None, args.payloads
        )
    _write_episodes(args, recordings, start_ms)
    print(
        f"replayed {len(recordings)} records into {args.out} in "
        f"{time.perf_counter() - started:.2f} s"
    )


def _write_episodes(args, recordings, start_ms) -> None:
    names = {r.name: f"rec-{r.dataset}-{r.name}" for r in recordings}
    path = f"{args.out}/episodes.jsonl"
    with open(path, "w") as table:
        for episode in labels.load_episodes(args.data):
            if episode.record not in names:
                continue
            event_start, event_end = episode.event_time_ms(start_ms)
            row = {
                **dataclasses.asdict(episode),
                "patient_id": names[episode.record],
                "event_start_ms": event_start,
                "event_end_ms": event_end,
            }
            table.write(json.dumps(row) + "\n")


def _run_simulate(args) -> None:
    values = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(simulator.SimulationConfig)
    }
    try:
        config = simulator.SimulationConfig(**values)
    except ValueError as error:
        raise SystemExit(f"invalid simulation settings: {error}") from None
    started = time.perf_counter()
    sim = simulator.simulate(config)
    generated = time.perf_counter()
    paths = simulator.write_simulation(sim, args.out, args.payloads)
    print(
        f"simulated {len(sim.columns['sequence'])} readings as "
        f"{len(sim.delivery_units)} deliveries, {len(sim.episodes)} "
        f"episodes and {len(sim.faults)} faults: generated in "
        f"{generated - started:.2f} s, written in "
        f"{time.perf_counter() - generated:.2f} s to "
        f"{', '.join(str(p) for p in paths.values())}"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(message)s"
    )
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
