"""Runner CLI: launch the vitals pipeline on any Beam runner.

    python -m runners run --runner DirectRunner --source avro:FILES \\
        --output_dir out/run
    python -m runners run --runner FlinkRunner --flink_master localhost:8081 \\
        --flink_job_server_jar JAR --environment_type LOOPBACK --streaming \\
        --source kafka:vitals --checkpointing_interval 10000
    python -m runners run --runner DataflowRunner --project P --region R \\
        --temp_location gs://B/tmp --setup_file ./setup.py --streaming \\
        --source pubsub:projects/P/subscriptions/vitals

`--help` lists vitalwatch's options and every Beam option, each with its
unit and default. Options this CLI does not know pass through to Beam.

`DirectRunner` is resolved here to an explicit local runner: Beam's own
DirectRunner may try to download the Prism runner, which needs internet
access and behaves differently from machine to machine. Bounded runs use
the FnApiRunner and streaming runs the BundleBasedDirectRunner.
"""

import argparse
import logging
import sys

import apache_beam as beam
from apache_beam.options import pipeline_options as beam_options

from models import registry
from pipelines import summary
from pipelines.options import VitalsOptions
from pipelines.vitals_pipeline import build_pipeline

_LOGGER = logging.getLogger(__name__)

_FN_API_RUNNER = (
    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"
)
_OPTION_GROUPS = (
    VitalsOptions,
    beam_options.StandardOptions,
    beam_options.DebugOptions,
    beam_options.PortableOptions,
    beam_options.FlinkRunnerOptions,
    beam_options.GoogleCloudOptions,
    beam_options.WorkerOptions,
    beam_options.SetupOptions,
)


# Flags every FlinkRunner job gets unless its command line sets them.
#
# Without --finish_bundle_before_checkpointing, Beam 2.62's Flink operator
# finishes a bundle that is open when a checkpoint starts inside the
# snapshot, keeps that bundle's output in operator state, and emits it only
# when its next bundle starts. A stage that receives one element and then
# nothing (the Kafka partition list, a single alert) keeps its output back
# until more input arrives, possibly forever, or until a job restored from
# the checkpoint runs.
FLINK_DEFAULTS = ("--finish_bundle_before_checkpointing",)

# Options of the Java FlinkPipelineOptions (beam-runners-flink 2.62.0) that
# the Python SDK may not declare. Python passes unknown options through to
# the job server, so these only need to appear in --help. A flag that a
# Python options class already declares keeps the Python help.
_FLINK_JAVA_OPTIONS = (
    (
        "--checkpointing_interval",
        "MSEC",
        "Interval between Flink checkpoints, in milliseconds. Streaming "
        "jobs need it for recovery. Default -1 (no checkpoints).",
    ),
    (
        "--savepoint_path",
        "PATH",
        "Savepoint or retained checkpoint to restore the job's state from, "
        "for example file:/path/savepoint-abc. Default: none.",
    ),
    (
        "--checkpoint_timeout_millis",
        "MSEC",
        "Time after which a checkpoint is aborted, in milliseconds. "
        "Default: Flink's, 10 minutes.",
    ),
    (
        "--min_pause_between_checkpoints",
        "MSEC",
        "Minimum pause between the end of one checkpoint and the start of "
        "the next, in milliseconds. Default -1 (none).",
    ),
    (
        "--finish_bundle_before_checkpointing",
        "",
        "Finish the open bundle and send its output downstream before a "
        "checkpoint barrier. This CLI sets it for FlinkRunner; see "
        "FLINK_DEFAULTS. Default false in Beam.",
    ),
    (
        "--max_bundle_size",
        "N",
        "Largest number of elements in a bundle; Beam metrics reach Flink "
        "when a bundle finishes. Default 1000 in streaming.",
    ),
    (
        "--max_bundle_time_mills",
        "MSEC",
        "Longest time a bundle stays open, in milliseconds (the Java "
        "option is spelled mills). Default 1000 in streaming.",
    ),
    (
        "--allow_non_restored_state",
        "BOOL",
        "Start from a savepoint even if some of its state belongs to no "
        "operator of the new job. Default false.",
    ),
    (
        "--execution_retry_delay",
        "MSEC",
        "Delay before a failed job restarts, in milliseconds. Default: the "
        "cluster's restart strategy.",
    ),
)


def _help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners run",
        description="Run the vitalwatch pipeline. Unknown options are "
        "passed to Beam.",
    )
    for options_class in _OPTION_GROUPS:
        group = parser.add_argument_group(options_class.__name__)
        options_class._add_argparse_args(group)
    group = parser.add_argument_group(
        "FlinkRunner options read by the Java job server"
    )
    for flag, metavar, text in _FLINK_JAVA_OPTIONS:
        if flag in parser._option_string_actions:
            continue
        if metavar:
            group.add_argument(flag, metavar=metavar, help=text)
        else:
            group.add_argument(flag, action="store_true", help=text)
    return parser


def with_flink_defaults(argv: list[str]) -> list[str]:
    """Add FLINK_DEFAULTS that `argv` does not set, for FlinkRunner jobs.

    Other runners' arguments come back unchanged.
    """
    options = beam_options.PipelineOptions(argv)
    runner = options.view_as(beam_options.StandardOptions).runner
    if runner != "FlinkRunner":
        return argv
    missing = [
        flag
        for flag in FLINK_DEFAULTS
        if not any(a.split("=")[0] == flag for a in argv)
    ]
    return [*argv, *missing]


def resolve_runner(argv: list[str]) -> list[str]:
    """Replace `DirectRunner` with the explicit local runner for the mode."""
    options = beam_options.PipelineOptions(argv)
    standard = options.view_as(beam_options.StandardOptions)
    if (standard.runner or "DirectRunner") != "DirectRunner":
        return argv
    local = "BundleBasedDirectRunner" if standard.streaming else _FN_API_RUNNER
    _LOGGER.info("DirectRunner resolved to %s", local)
    rest = [a for a in argv if not a.startswith("--runner")]
    if "--runner" in argv:
        index = argv.index("--runner")
        rest = argv[:index] + argv[index + 2 :]
    return [*rest, f"--runner={local}"]


def run(argv: list[str]) -> int:
    """Parse and validate options, run the pipeline, print the summary."""
    argv = with_flink_defaults(resolve_runner(argv))
    options = beam_options.PipelineOptions(argv)
    vitals = options.view_as(VitalsOptions)
    problems = vitals.validate_vitals()
    if not vitals.source:
        problems.append("--source is required")
    streaming = options.view_as(beam_options.StandardOptions).streaming
    if (
        vitals.model_registry
        and not streaming
        and registry.current_version(vitals.model_registry) is None
    ):
        # A streaming job polls the registry and picks up a model promoted
        # later; a bounded run would score nothing.
        problems.append(
            f"--model_registry {vitals.model_registry} has no promoted "
            "model; promote one (python -m models promote) or leave the "
            "option out to run without the model path"
        )
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if not (
        vitals.output_dir or vitals.alerts_topic or vitals.dead_letter_topic
    ):
        print(
            "warning: no --output_dir, --alerts_topic or "
            "--dead_letter_topic: alerts and dead letters are counted but "
            "not written",
            file=sys.stderr,
        )
    options.view_as(beam_options.SetupOptions).save_main_session = False
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    print(summary.format_counters(summary.counters(result)))
    return 0


def main(argv: list[str]) -> int:
    """Dispatch the `run` command."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m runners run [options]; see run --help")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command != "run":
        print(f"error: unknown command {command!r}; use run", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        _help_parser().print_help()
        return 0
    return run(rest)
