"""Tests for the devices command line."""

import json

import pytest

from devices import __main__ as cli
from schemas import codec


def _option_helps(subcommand):
    parser = cli._build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    return {
        action.dest: action.help
        for action in subparsers[subcommand]._actions
        if action.dest != "help"
    }


@pytest.mark.parametrize("subcommand", ["replay", "simulate"])
def test_every_option_has_default_in_help(subcommand):
    for name, text in _option_helps(subcommand).items():
        assert "Default" in text, name


def test_simulate_writes_outputs(tmp_path, capsys):
    cli.main(
        [
            "simulate",
            "--n_patients",
            "5",
            "--duration_s",
            "30",
            "--invalid_fraction",
            "0.05",
            "--out",
            str(tmp_path),
        ]
    )
    records = list(codec.read_container(tmp_path / "readings.avro"))
    assert len(records) >= 5 * 30 - 1
    rows = [json.loads(line) for line in open(tmp_path / "ground_truth.jsonl")]
    assert any(row["kind"].startswith("invalid_") for row in rows)
    assert "simulated" in capsys.readouterr().out


def test_simulate_rejects_invalid_settings(tmp_path):
    with pytest.raises(SystemExit, match="invalid simulation settings"):
        cli.main(["simulate", "--rate_hz", "1000", "--out", str(tmp_path)])


def test_replay_writes_outputs(tmp_path, data_dir):
    cli.main(
        [
            "replay",
            "--data",
            str(data_dir),
            "--datasets",
            "cpsc2021",
            "--records",
            "data_101_6",
            "--out",
            str(tmp_path),
            "--payloads",
        ]
    )
    stem = tmp_path / "edge-cpsc2021-data_101_6"
    readings = list(codec.read_container(f"{stem}.readings.avro"))
    assert len(readings) == 111
    assert (tmp_path / "edge-cpsc2021-data_101_6.batches.avro").exists()
    assert (tmp_path / "edge-cpsc2021-data_101_6.payloads").exists()
    episodes = [json.loads(line) for line in open(tmp_path / "episodes.jsonl")]
    assert len(episodes) == 4
    assert {e["patient_id"] for e in episodes} == {"rec-cpsc2021-data_101_6"}


def test_replay_unknown_record_exits(tmp_path, data_dir):
    with pytest.raises(SystemExit, match="not found"):
        cli.main(
            [
                "replay",
                "--data",
                str(data_dir),
                "--records",
                "nope",
                "--out",
                str(tmp_path),
            ]
        )
