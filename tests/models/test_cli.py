"""The `python -m models` commands, run in process on simulated history."""

import subprocess
import sys

import pytest

from models import registry
from models.__main__ import main

# Each command recomputes the feature rows of its history.
pytestmark = pytest.mark.slow


def _train_args(history, root, *extra):
    return [
        "train",
        "--input",
        history.records,
        "--registry",
        root,
        "--n_estimators",
        "50",
        *extra,
    ]


def _eval_args(history):
    return [
        "--eval_input",
        history.records,
        "--eval_labels",
        history.ground_truth,
    ]


def test_train_stores_without_promoting(tmp_path, training_history, capsys):
    root = str(tmp_path)
    assert main(_train_args(training_history, root)) == 0
    assert registry.versions(root) == [1]
    assert registry.current_version(root) is None
    assert "stored version 1" in capsys.readouterr().out


def test_train_promote_runs_gate(
    tmp_path, training_history, evaluation_history, capsys
):
    root = str(tmp_path)
    args = _train_args(
        training_history, root, "--promote", *_eval_args(evaluation_history)
    )
    assert main(args) == 0
    assert registry.current_version(root) == 1
    gate = registry.read_metadata(root, 1)["gate"]
    assert gate["accepted"] is True
    assert gate["candidate_scores"]["roc_auc"] > 0.8


def test_promote_then_list(
    tmp_path, training_history, evaluation_history, capsys
):
    root = str(tmp_path)
    assert main(_train_args(training_history, root)) == 0
    promote = ["promote", "--registry", root, "--version", "1"]
    assert main(promote + _eval_args(evaluation_history)) == 0
    capsys.readouterr()
    assert main(["list", "--registry", root]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("* v1 ")
    assert "gate=True" in listing


def test_promote_accepts_hyphenated_flag(
    tmp_path, training_history, evaluation_history
):
    root = str(tmp_path)
    assert main(_train_args(training_history, root)) == 0
    args = [
        "promote",
        "--registry",
        root,
        "--version",
        "1",
        "--eval-input",
        evaluation_history.records,
        "--eval-labels",
        evaluation_history.ground_truth,
    ]
    assert main(args) == 0


def test_retrain_rejects_one_class_eval(tmp_path, training_history):
    # The training history's ground truth with no episodes: every row is
    # normal, so the gate cannot rank and must reject.
    root = str(tmp_path)
    empty_labels = tmp_path / "no_episodes.jsonl"
    empty_labels.write_text("")
    args = [
        "retrain",
        "--input",
        training_history.records,
        "--registry",
        root,
        "--n_estimators",
        "50",
        "--eval_input",
        training_history.records,
        "--eval_labels",
        str(empty_labels),
    ]
    assert main(args) == 3
    assert registry.current_version(root) is None
    assert registry.read_metadata(root, 1)["gate"]["accepted"] is False


def test_retrain_promotes_through_gate(
    tmp_path, training_history, evaluation_history
):
    root = str(tmp_path)
    args = [
        "retrain",
        "--input",
        training_history.records,
        "--registry",
        root,
        *_eval_args(evaluation_history),
    ]
    assert main(args) == 0
    assert main(args) == 0
    assert registry.current_version(root) == 2


def test_train_reports_missing_input(tmp_path, capsys):
    args = ["train", "--input", str(tmp_path / "none*.avro")]
    assert main(args + ["--registry", str(tmp_path)]) == 1


def test_module_help_runs():
    completed = subprocess.run(
        [sys.executable, "-m", "models", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "retrain" in completed.stdout


def test_train_records_input_files(tmp_path, training_history):
    root = str(tmp_path)
    assert main(_train_args(training_history, root)) == 0
    source = registry.read_metadata(root, 1)["data_window"]["source"]
    assert source == {"kind": "files", "paths": [training_history.records]}


_KAFKA = ["--kafka_topic", "vitals", "--kafka_bootstrap", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("source_args", "message"),
    [
        ([], "no training history: give --input or --kafka_topic"),
        (
            ["--input", "h.avro", *_KAFKA],
            "--input and --kafka_topic were both given",
        ),
        (
            ["--kafka_topic", "vitals"],
            "--kafka_topic requires --kafka_bootstrap",
        ),
        (
            ["--input", "h.avro", "--kafka_offsets", "0:0-5"],
            "--kafka_offsets requires --kafka_topic",
        ),
        (
            ["--input", "h.avro", "--kafka_bootstrap", "127.0.0.1:1"],
            "--kafka_bootstrap requires --kafka_topic",
        ),
        (
            ["--input", "h.avro", "--kafka_config", "security.protocol=SSL"],
            "--kafka_config requires --kafka_topic",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "0:100"],
            "invalid --kafka_offsets entry '0:100'",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "0:5-1"],
            "invalid --kafka_offsets entry '0:5-1': start offset is after",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "0:0-5,x:0-5"],
            "invalid --kafka_offsets entry 'x:0-5'",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "0:latest-5"],
            "invalid --kafka_offsets entry '0:latest-5'",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "0:0-5,0:5-9"],
            "partition 0 appears more than once",
        ),
        (
            [*_KAFKA, "--kafka_offsets", "*:earliest-end,1:0-5"],
            "'*' applies to every partition",
        ),
    ],
)
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_training_source_rejected(
    tmp_path, capsys, command, source_args, message
):
    args = [command, "--registry", str(tmp_path), *source_args]
    if command == "retrain":
        args += ["--eval_input", "e.avro", "--eval_labels", "e.jsonl"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert registry.versions(str(tmp_path)) == []


def test_kafka_config_value_not_echoed(tmp_path, capsys):
    args = [
        "train",
        "--registry",
        str(tmp_path),
        "--input",
        "h.avro",
        "--kafka_config",
        "sasl.password=hunter2",
    ]
    with pytest.raises(SystemExit):
        main(args)
    assert "hunter2" not in capsys.readouterr().err
