"""Train, gate, promote and list the Isolation Forest models of vitalwatch.

Commands::

    # Train on Avro history and store a new version (not promoted):
    python -m models train --input 'out/history/*.avro' --registry models_dir
    # Train on offsets 100 to 4999 of partition 0 and on all that
    # partition 1 retains up to its current end:
    python -m models train --kafka_topic vitals \\
        --kafka_bootstrap 127.0.0.1:19092 \\
        --kafka_offsets 0:100-5000,1:earliest-end --registry models_dir
    # Promote a version through the gate, on labelled evaluation data:
    python -m models promote --registry models_dir --version 3 \\
        --eval_input 'out/eval/*.avro' --eval_labels out/eval/ground_truth.jsonl
    # List the versions, marking the promoted one:
    python -m models list --registry models_dir
    # Train, gate and promote in one step, for a schedule:
    python -m models retrain --input 'out/history/*.avro' \\
        --registry gs://B/models --eval_input 'gs://B/eval/*.avro' \\
        --eval_labels gs://B/eval/ground_truth.jsonl

`retrain` exits with status 0 when the new version was promoted, 3 when
the gate rejected it and 1 on errors, so a scheduler can alert on anything
but 0. The gate's reasons are logged and stored in the version's metadata
under "gate". Schedule it, for example nightly at 02:00, with cron::

    0 2 * * * cd /srv/vitalwatch && .venv/bin/python -m models retrain \\
        --input 'gs://B/history/*.avro' --registry gs://B/models \\
        --eval_input 'gs://B/eval/*.avro' \\
        --eval_labels gs://B/eval/ground_truth.jsonl >> retrain.log 2>&1

or with a Kubernetes CronJob running the project's image::

    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: vitalwatch-retrain}
    spec:
      schedule: "0 2 * * *"
      concurrencyPolicy: Forbid  # two runs would race for the next version
      jobTemplate:
        spec:
          backoffLimit: 0          # a rejected model is not retried
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: retrain
                image: IMAGE
                args: [python, -m, models, retrain,
                       --input, "gs://B/history/*.avro",
                       --registry, gs://B/models,
                       --eval_input, "gs://B/eval/*.avro",
                       --eval_labels, gs://B/eval/ground_truth.jsonl]

Running streaming pipelines pick up a promoted version within
`--model_refresh_sec` without a restart.

`train` and `retrain` read their history from `--input` files or from a
Kafka topic, never both. A Kafka read assigns each partition at its start
offset, stops before its stop offset, uses a throwaway consumer group and
commits nothing (see `models.kafka_history`). Messages that do not decode
are skipped and counted. Add `--kafka_config KEY=VALUE` for TLS or SASL.
The version's metadata stores the source under "data_window": the file
paths, or the topic with the offset range read from each partition.
"""

import argparse
import logging
import sys

from apache_beam.io.filesystems import FileSystems

from models import gate, kafka_history, registry, train
from pipelines.options import VitalsOptions

_LOGGER = logging.getLogger("models")
_REJECTED_EXIT = 3
_DEFAULTS = VitalsOptions([])
# Every partition, from the earliest retained offset to the current end.
_ALL_RETAINED = "*:earliest-end"


def _expand(patterns: list[str]) -> list[str]:
    """Expand file patterns; raise when one matches no file."""
    paths = []
    for pattern in patterns:
        matched = FileSystems.match([pattern])[0].metadata_list
        if not matched:
            raise ValueError(f"input pattern {pattern!r} matches no file")
        paths.extend(sorted(m.path for m in matched))
    return paths


def _add_registry(parser):
    parser.add_argument(
        "--registry",
        required=True,
        help="Model registry root, a folder or gs:// prefix.",
    )


def _add_training(parser):
    parser.add_argument(
        "--input",
        nargs="+",
        help="Avro files of VitalReading or VitalBatch records to train on, "
        "as file patterns. Give this or --kafka_topic.",
    )
    _add_kafka_source(parser)
    parser.add_argument(
        "--window_size_sec",
        type=int,
        default=_DEFAULTS.window_size_sec,
        help="Feature window size in seconds; must match the pipeline. "
        f"Default {_DEFAULTS.window_size_sec}.",
    )
    parser.add_argument(
        "--window_period_sec",
        type=int,
        default=_DEFAULTS.window_period_sec,
        help="Feature window period in seconds; must match the pipeline. "
        f"Default {_DEFAULTS.window_period_sec}.",
    )
    parser.add_argument(
        "--n_estimators",
        type=int,
        default=200,
        help="Number of trees. Default 200.",
    )
    parser.add_argument(
        "--max_samples",
        type=int,
        default=256,
        help="Rows drawn per tree. Default 256.",
    )
    parser.add_argument(
        "--contamination",
        type=float,
        default=0.02,
        help="Expected fraction of anomalous training rows; sets the "
        "threshold. Default 0.02.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Random seed of the forest. Default 0.",
    )


def _add_kafka_source(parser):
    parser.add_argument(
        "--kafka_topic",
        help="Kafka topic to train on, with one VitalReading or VitalBatch "
        "single-object payload per message. Give this or --input.",
    )
    parser.add_argument(
        "--kafka_bootstrap",
        help="Kafka bootstrap servers, host:port[,host:port]. Required "
        "with --kafka_topic.",
    )
    parser.add_argument(
        "--kafka_offsets",
        help="Offset ranges to read, PARTITION:START-STOP joined with "
        "commas, STOP exclusive, for example 0:100-5000,1:0-4200. START "
        "may be 'earliest', STOP may be 'end' (the end offset when the "
        "read starts) and PARTITION may be '*' for every partition. "
        f"Default {_ALL_RETAINED}.",
    )
    parser.add_argument(
        "--kafka_config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra librdkafka consumer setting, repeatable. Use it for "
        "SASL and TLS, for example security.protocol=SSL. Values are "
        "never logged. Default none.",
    )


def _add_evaluation(parser, required: bool):
    parser.add_argument(
        "--eval_input",
        "--eval-input",
        nargs="+",
        required=required,
        help="Avro files with labelled episodes for the promote gate, as "
        "file patterns." + ("" if required else " Default: none."),
    )
    parser.add_argument(
        "--eval_labels",
        "--eval-labels",
        required=required,
        help="Ground-truth JSON lines of the evaluation episodes, as the "
        "device simulator writes them."
        + ("" if required else " Default: none."),
    )
    defaults = gate.GatePolicy()
    parser.add_argument(
        "--gate_metric",
        choices=("roc_auc", "average_precision"),
        default=defaults.metric,
        help=f"Ranking metric of the gate. Default {defaults.metric}.",
    )
    parser.add_argument(
        "--min_metric",
        type=float,
        default=defaults.min_metric,
        help=f"Lowest acceptable metric. Default {defaults.min_metric}.",
    )
    parser.add_argument(
        "--max_metric_drop",
        type=float,
        default=defaults.max_metric_drop,
        help="How far below the promoted model's metric a candidate may "
        f"score. Default {defaults.max_metric_drop}.",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser of all commands."""
    parser = argparse.ArgumentParser(prog="python -m models")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="Train a new version.")
    _add_registry(train_parser)
    _add_training(train_parser)
    _add_evaluation(train_parser, required=False)
    train_parser.add_argument(
        "--promote",
        action="store_true",
        help="Promote the new version through the gate. Without "
        "--eval_input only the artifact and training-data checks run. "
        "Default: store without promoting.",
    )

    promote_parser = commands.add_parser(
        "promote", help="Promote a version through the gate."
    )
    _add_registry(promote_parser)
    promote_parser.add_argument(
        "--version", type=int, required=True, help="Version to promote."
    )
    _add_evaluation(promote_parser, required=True)

    list_parser = commands.add_parser("list", help="List the versions.")
    _add_registry(list_parser)

    retrain_parser = commands.add_parser(
        "retrain", help="Train, gate and promote a new version."
    )
    _add_registry(retrain_parser)
    _add_training(retrain_parser)
    _add_evaluation(retrain_parser, required=True)
    return parser


def _policy(args) -> gate.GatePolicy:
    return gate.GatePolicy(
        metric=args.gate_metric,
        min_metric=args.min_metric,
        max_metric_drop=args.max_metric_drop,
    )


def _evaluation(args, size_ms: int, period_ms: int) -> gate.LabelledRows:
    table = train.history_table(_expand(args.eval_input), size_ms, period_ms)
    episodes = gate.read_episodes(args.eval_labels)
    evaluation = gate.LabelledRows.from_history(table, size_ms, episodes)
    _LOGGER.info(
        "Evaluation set: %d rows, %d anomalous",
        len(evaluation.labels),
        int(evaluation.labels.sum()),
    )
    return evaluation


def _check_source(args) -> None:
    """Check that the training flags name exactly one history source.

    Raises:
        ValueError: On no source, both sources, a Kafka flag without
            --kafka_topic, or a malformed --kafka_offsets value.
    """
    if args.input and args.kafka_topic:
        raise ValueError(
            "--input and --kafka_topic were both given; train on one source"
        )
    if not args.input and not args.kafka_topic:
        raise ValueError("no training history: give --input or --kafka_topic")
    if args.kafka_topic:
        if not args.kafka_bootstrap:
            raise ValueError("--kafka_topic requires --kafka_bootstrap")
        kafka_history.parse_offsets(args.kafka_offsets or _ALL_RETAINED)
        return
    for name in ("kafka_bootstrap", "kafka_offsets"):
        if getattr(args, name):
            raise ValueError(f"--{name} requires --kafka_topic")
    if args.kafka_config:
        raise ValueError("--kafka_config requires --kafka_topic")


def _files_history(args, size_ms: int, period_ms: int):
    paths = _expand(args.input)
    table = train.history_table(paths, size_ms, period_ms)
    return table, {"kind": "files", "paths": paths}


def _kafka_history(args, size_ms: int, period_ms: int):
    specs = kafka_history.parse_offsets(args.kafka_offsets or _ALL_RETAINED)
    config = VitalsOptions(kafka_config=args.kafka_config).kafka_client_config()
    consumer = kafka_history.create_consumer(args.kafka_bootstrap, config)
    try:
        ranges = kafka_history.resolve_ranges(consumer, args.kafka_topic, specs)
        summary = kafka_history.ReadSummary()
        records = kafka_history.read_records(
            consumer, args.kafka_topic, ranges, summary
        )
        table = train.table_from_records(records, size_ms, period_ms)
    finally:
        consumer.close()
    source = kafka_history.describe(args.kafka_topic, ranges, summary)
    return table, source


def _train_version(args) -> int:
    size_ms = args.window_size_sec * 1000
    period_ms = args.window_period_sec * 1000
    if args.kafka_topic:
        table, source = _kafka_history(args, size_ms, period_ms)
    else:
        table, source = _files_history(args, size_ms, period_ms)
    bundle = train.train(
        table,
        size_ms,
        period_ms,
        source=source,
        n_estimators=args.n_estimators,
        max_samples=args.max_samples,
        contamination=args.contamination,
        seed=args.seed,
    )
    version = registry.save(args.registry, bundle)
    _LOGGER.info("Trained version %d on %d rows", version, len(table.rows))
    return version


def _gate_and_promote(args, version: int) -> int:
    metadata = registry.read_metadata(args.registry, version)
    size_ms = metadata.get("window_size_ms", _DEFAULTS.window_size_sec * 1000)
    period_ms = metadata.get(
        "window_period_ms", _DEFAULTS.window_period_sec * 1000
    )
    evaluation = _evaluation(args, size_ms, period_ms)
    decision = gate.promote_if_accepted(
        args.registry, version, evaluation, _policy(args)
    )
    _print_decision(decision)
    return 0 if decision.accepted else _REJECTED_EXIT


def _print_decision(decision: gate.GateDecision) -> None:
    if decision.accepted:
        print(f"promoted version {decision.version}")
    else:
        print(f"rejected version {decision.version}:")
        for reason in decision.reasons:
            print(f"  - {reason}")
    for name in ("roc_auc", "average_precision"):
        candidate = decision.candidate_scores.get(name)
        current = decision.current_scores.get(name)
        if candidate is not None:
            print(f"  {name}: {candidate:.4f} (promoted: {current})")


def _promote_unlabelled(root: str, version: int) -> int:
    # Without labels only the checks that need no evaluation rows can run.
    bundle = registry.load(root, version)
    problems = gate.training_problems(bundle)
    if problems:
        print(f"rejected version {version}: " + "; ".join(problems))
        return _REJECTED_EXIT
    _LOGGER.warning(
        "Promoting version %d without an evaluation set: its ranking was "
        "not checked",
        version,
    )
    registry.promote(root, version)
    print(f"promoted version {version}")
    return 0


def _run_train(args) -> int:
    version = _train_version(args)
    print(f"stored version {version}")
    if not args.promote:
        return 0
    if args.eval_input and args.eval_labels:
        return _gate_and_promote(args, version)
    return _promote_unlabelled(args.registry, version)


def _run_list(args) -> int:
    current = registry.current_version(args.registry)
    for version in registry.versions(args.registry):
        metadata = registry.read_metadata(args.registry, version)
        window = metadata.get("data_window", {})
        first = window.get("first_event_ms")
        last = window.get("last_event_ms")
        verdict = metadata.get("gate", {}).get("accepted")
        marker = "*" if version == current else " "
        print(
            f"{marker} v{version:<5d} rows={metadata.get('training_rows')} "
            f"sklearn={metadata.get('sklearn_version')} "
            f"data_ms={first}..{last} "
            f"gate={'-' if verdict is None else verdict}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "retrain"):
        try:
            _check_source(args)
        except ValueError as error:
            parser.error(str(error))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        if args.command == "train":
            return _run_train(args)
        if args.command == "promote":
            return _gate_and_promote(args, args.version)
        if args.command == "list":
            return _run_list(args)
        return _gate_and_promote(args, _train_version(args))
    except (ValueError, registry.ModelLoadError) as error:
        _LOGGER.error("%s failed: %s", args.command, error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
