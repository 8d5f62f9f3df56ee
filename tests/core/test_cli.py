"""Tests of the runner CLI: help text, option checks and a bounded run."""

import json
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import demo
from pipelines.options import VitalsOptions
from runners import cli
from schemas import VITAL_BATCH, write_container
from tests.core.helpers import batch_record


def _run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "runners", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_help_documents_every_option():
    result = _run_cli("run", "--help")
    assert result.returncode == 0
    parser = cli._help_parser()
    vitals_group = next(
        g for g in parser._action_groups if g.title == "VitalsOptions"
    )
    for action in vitals_group._group_actions:
        assert action.help, action.dest
        assert "Default" in action.help, action.dest
        assert action.option_strings[0] in result.stdout


def test_invalid_window_rejected():
    result = _run_cli(
        "run",
        "--source",
        "avro:x",
        "--window_size_sec",
        "100",
        "--window_period_sec",
        "60",
    )
    assert result.returncode == 2
    assert "not a multiple" in result.stderr


def test_invalid_drift_options_rejected():
    options = PipelineOptions(
        [
            "--drift_window_sec=0",
            "--drift_psi_threshold=-0.1",
            "--drift_min_rows=0",
        ]
    )
    problems = options.view_as(VitalsOptions).validate_vitals()
    assert "--drift_window_sec must be positive" in problems
    assert "--drift_psi_threshold must be positive" in problems
    assert "--drift_min_rows must be positive" in problems


def test_missing_source_rejected():
    result = _run_cli("run")
    assert result.returncode == 2
    assert "--source is required" in result.stderr


def test_direct_runner_resolved_explicitly():
    bounded = cli.resolve_runner(["--runner", "DirectRunner", "--x=1"])
    streaming = cli.resolve_runner(["--streaming"])
    assert bounded[-1].endswith("FnApiRunner")
    assert "--x=1" in bounded
    assert streaming[-1] == "--runner=BundleBasedDirectRunner"


def test_flink_jobs_finish_bundles_before_checkpoints():
    flink = cli.with_flink_defaults(["--runner=FlinkRunner", "--streaming"])
    assert flink.count("--finish_bundle_before_checkpointing") == 1
    already = [
        "--runner",
        "FlinkRunner",
        "--finish_bundle_before_checkpointing",
    ]
    assert cli.with_flink_defaults(already) == already
    local = ["--runner=BundleBasedDirectRunner", "--streaming"]
    assert cli.with_flink_defaults(local) == local


def test_kafka_read_time_must_be_positive():
    result = _run_cli(
        "run", "--source", "kafka:vitals", "--kafka_max_read_sec", "0"
    )
    assert result.returncode == 2
    assert "--kafka_max_read_sec must be positive" in result.stderr


def test_bounded_run_writes_alerts(tmp_path):
    records = [batch_record("p", m) for m in range(3)]
    records.append(batch_record("p", 3, heart_rate=170.0))
    write_container(tmp_path / "in.avro", VITAL_BATCH, records)
    result = _run_cli(
        "run",
        "--runner",
        "DirectRunner",
        f"--source=avro:{tmp_path}/in.avro",
        f"--output_dir={tmp_path}/out",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "readings_in" in result.stdout
    with open(tmp_path / "out" / "alerts.jsonl") as lines:
        alerts = [json.loads(line) for line in lines]
    assert ("tachycardia", "SEVERE") in {(a["kind"], a["tier"]) for a in alerts}


@pytest.mark.parametrize(
    "flags, problem",
    [
        (["--window_period_sec=0"], "--window_period_sec must be positive"),
        (["--window_size_sec=0"], "--window_size_sec must be positive"),
        (["--window_size_sec=-5"], "--window_size_sec must be positive"),
        (["--suppression_sec=-10"], "--suppression_sec must not be negative"),
        (
            ["--max_future_skew_sec=-1"],
            "--max_future_skew_sec must not be negative",
        ),
    ],
)
def test_out_of_range_options_named(flags, problem):
    problems = PipelineOptions(flags).view_as(VitalsOptions).validate_vitals()
    assert problems == [problem]


def test_registry_without_model_rejected_for_bounded_run(tmp_path):
    result = _run_cli(
        "run",
        "--runner",
        "DirectRunner",
        "--source=avro:x",
        f"--model_registry={tmp_path}/empty",
    )
    assert result.returncode == 2
    assert "has no promoted model" in result.stderr


def test_run_without_outputs_warns(tmp_path):
    write_container(tmp_path / "in.avro", VITAL_BATCH, [batch_record("p", 0)])
    result = _run_cli(
        "run", "--runner", "DirectRunner", f"--source=avro:{tmp_path}/in.avro"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "counted but not written" in result.stderr


def test_demo_names_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no-data"
    assert demo.main(["--data", str(missing), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(missing) in error
    assert "VITALWATCH_DATA" in error


def test_cli_start_prints_no_library_warnings():
    # Without -W ignore, as a data engineer runs it.
    result = subprocess.run(
        [sys.executable, "-m", "runners", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0
    assert "FutureWarning" not in result.stderr
