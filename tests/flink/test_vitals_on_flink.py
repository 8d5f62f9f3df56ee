"""Run the vitals pipeline on the local Flink cluster, Kafka to Kafka.

The replay of CinC record t430s (true extreme tachycardia) goes through
Kafka into the streaming pipeline on FlinkRunner, and the alerts come back
through the alerts topic. The tests check the alert, the Beam counters in
Flink's vertex metrics while the job runs, recovery from a checkpoint
after the TaskManager is killed, a stop with a savepoint and a resume
from it, and a model promoted while the job runs. `vitals_job` explains
why the replay is stamped ahead of the wall clock.

The first job is launched through `python -m runners run`, as an operator
would. The recovery job is built in the test process, because it adds two
tap topics to the graph: the (device, sequence) of every reading that
reached the pipeline, and every per-reading summary that left the
de-duplication stage.
"""

import collections
import contextlib
import dataclasses
import subprocess
import sys
import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.runners.runner import PipelineState

from models import registry
from pipelines.vitals_pipeline import build_pipeline
from schemas import epoch_ms
from tests.flink import vitals_job
from tests.flink.conftest import REPO_ROOT, run_script
from tests.flink.flink_rest import wait_until
from tests.models.conftest import synthetic_bundle
from transforms.kafka_io import WriteToKafkaTopic

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.slow]

# Submitting a job uploads about 150 MB of jars and starts an SDK harness,
# which took up to 40 s on 2 cores.
_JOB_START_TIMEOUT_SEC = 180
_PROCESS_TIMEOUT_SEC = 180
# Killing the TaskManager costs the 20 s heartbeat timeout, the 10 s
# restart delay and about 20 s to start a new TaskManager.
_RECOVERY_TIMEOUT_SEC = 300
_STOP_TIMEOUT_SEC = 120
_CHECKPOINT_INTERVAL_MSEC = 2000
_HELP_TIMEOUT_SEC = 60
# How often the model test's job polls the registry.
_MODEL_REFRESH_SEC = 2
# The partition list reaches the Kafka read within seconds of the tasks
# running when the job works at all.
_LISTING_TIMEOUT_SEC = 60
_UNFINISHED_STATES = {"CREATED", "RUNNING", "RESTARTING", "INITIALIZING"}
_COUNTERS = (
    ("vitalwatch", "payloads_in"),
    ("vitalwatch", "readings_in"),
    ("vitalwatch", "readings_on_time"),
    ("vitalwatch", "readings_duplicate"),
    ("vitalwatch", "readings_late"),
    ("vitalwatch", "dead_letters_unknown_framing"),
    ("vitalwatch", "alerts_severe"),
    ("kafka_io", "records_read"),
    ("kafka_io", "records_written"),
)


@pytest.fixture(scope="module")
def replay():
    try:
        return vitals_job.replay_t430s(vitals_job.start_ahead_of_now())
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")


def _job_name(kind: str) -> str:
    return f"vitalwatch-{kind}-{uuid.uuid4().hex[:8]}"


def _vitals_args(flink_cluster, bootstrap, job_name, topics, group):
    return flink_cluster.pipeline_args(job_name) + [
        "--streaming",
        f"--checkpointing_interval={_CHECKPOINT_INTERVAL_MSEC}",
        f"--source=kafka:{topics['vitals']}",
        f"--kafka_bootstrap={bootstrap}",
        f"--kafka_group={group}",
        f"--alerts_topic={topics['alerts']}",
        f"--dead_letter_topic={topics['dead-letters']}",
        f"--max_future_skew_sec={vitals_job.MAX_FUTURE_SKEW_SEC}",
    ]


def _wait_until_running(rest, job_name: str) -> str:
    job = rest.wait_for_job_state(job_name, {"RUNNING"}, _JOB_START_TIMEOUT_SEC)
    rest.wait_for_running_tasks(job["jid"], _JOB_START_TIMEOUT_SEC)
    return job["jid"]


def _partitions_listed(rest, job_id: str) -> bool:
    """Return whether the partition list has reached the Kafka read.

    The list passes two vertices, the one after the Impulse source and
    the one that pairs each partition with its offset range. Either can
    hold it, as _submit_and_wait_listed explains.
    """
    vertices = rest.get(f"/jobs/{job_id}")["vertices"]
    pairing = [v for v in vertices if "PairWithRestriction" in v["name"]]
    return bool(pairing) and pairing[0]["metrics"]["write-records"] > 0


def _submit_and_wait_listed(rest, job_name: str, submit) -> str:
    """Submit with `submit()`; return the job id once it lists partitions.

    Before runners.cli.FLINK_DEFAULTS existed, 12 of 17 submissions on
    this machine stalled here: a checkpoint kept the partition list in
    operator state. A stall now fails the test.
    """
    submit()
    job_id = _wait_until_running(rest, job_name)
    wait_until(
        lambda: _partitions_listed(rest, job_id),
        _LISTING_TIMEOUT_SEC,
        f"partition list of {job_name} reaching the Kafka read",
    )
    return job_id


def _cancel_if_running(rest, job_name: str) -> None:
    job = rest.find_job(job_name)
    if job and job["state"] in _UNFINISHED_STATES:
        rest.cancel_job(job["jid"])


def _read_counters(rest, job_id: str) -> dict[str, int]:
    counters = {}
    for namespace, name in _COUNTERS:
        value = rest.read_user_counter_metric(job_id, namespace, name)
        counters[f"{namespace}_{name}"] = value
    return counters


def _severe_alerts(alerts):
    return [a for a in alerts if a["tier"] == "SEVERE"]


# ------------------------------------------------------------ CLI run


@dataclasses.dataclass
class CliRun:
    """What the CLI-launched job produced while running and after its stop."""

    alerts: list[dict]
    dead_letters: list[dict]
    counters: dict[str, int]
    checkpoints: dict
    returncode: int
    stdout: str
    committed_offset: int
    published: int
    user_config: dict


def _launch_cli(args: list[str], log_dir):
    stdout = open(log_dir / "cli.stdout", "a")
    stderr = open(log_dir / "cli.stderr", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "runners", "run", *args],
        cwd=REPO_ROOT,
        stdout=stdout,
        stderr=stderr,
    )
    return process, stdout, stderr


@pytest.fixture(scope="module")
def cli_run(flink_cluster, kafka_broker, replay, tmp_path_factory):
    """Run the pipeline once through the CLI over the whole replay."""
    bootstrap, rest = kafka_broker.bootstrap, flink_cluster.rest
    job_name = _job_name("cli")
    topics = vitals_job.create_topics(
        bootstrap, job_name, ["vitals", "alerts", "dead-letters"]
    )
    vitals_job.publish_readings(bootstrap, topics["vitals"], replay.readings)
    vitals_job.publish_poison(
        bootstrap, topics["vitals"], replay.readings[-1]["event_time"]
    )
    log_dir = tmp_path_factory.mktemp("cli")
    args = _vitals_args(flink_cluster, bootstrap, job_name, topics, job_name)
    launched = []

    def submit():
        launched.append(_launch_cli(args, log_dir))

    try:
        job_id = _submit_and_wait_listed(rest, job_name, submit)
        config = rest.get(f"/jobs/{job_id}/config")["execution-config"]
        process = launched[-1][0]
        wait_until(
            lambda: _severe_alerts(
                vitals_job.read_alerts(bootstrap, topics["alerts"])
            ),
            _PROCESS_TIMEOUT_SEC,
            "a SEVERE alert in the alerts topic",
        )
        counters = _wait_for_counters(rest, job_id, len(replay.readings))
        checkpoints = rest.wait_for_checkpoints(job_id, 2, _STOP_TIMEOUT_SEC)
        rest.stop_with_savepoint(job_id, _STOP_TIMEOUT_SEC)
        returncode = process.wait(timeout=_STOP_TIMEOUT_SEC)
    finally:
        _cancel_if_running(rest, job_name)
        for process, stdout, stderr in launched:
            if process.poll() is None:
                process.kill()
            stdout.close()
            stderr.close()
    run = CliRun(
        alerts=vitals_job.read_alerts(bootstrap, topics["alerts"]),
        dead_letters=vitals_job.read_dead_letters(
            bootstrap, topics["dead-letters"]
        ),
        counters=counters,
        checkpoints=checkpoints,
        returncode=returncode,
        stdout=(log_dir / "cli.stdout").read_text(),
        committed_offset=vitals_job.committed_offset(
            bootstrap, job_name, topics["vitals"]
        ),
        published=len(replay.readings) + 1,
        user_config=config["user-config"],
    )
    vitals_job.delete_topics(bootstrap, topics)
    return run


def _wait_for_counters(rest, job_id: str, readings: int) -> dict:
    """Wait until the vertex metrics count every reading, and return them.

    The JobManager refreshes metrics at most every 10 s and each vertex
    reports when its bundles finish, so the counters arrive one by one.
    """
    last = {}

    def complete():
        last.update(_read_counters(rest, job_id))
        done = (
            last["vitalwatch_readings_on_time"] == readings
            and last["vitalwatch_payloads_in"] == readings + 1
            and last["kafka_io_records_written"] == 2
        )
        return dict(last) if done else None

    try:
        return wait_until(complete, _PROCESS_TIMEOUT_SEC, "counters")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; last counters {last}") from None


def test_cli_help_lists_flink_options():
    completed = subprocess.run(
        [sys.executable, "-m", "runners", "run", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_HELP_TIMEOUT_SEC,
        check=True,
    )
    for flag in (
        "--flink_master",
        "--flink_job_server_jar",
        "--checkpointing_interval",
        "--savepoint_path",
        "--environment_type",
        "--alerts_topic",
        "--dead_letter_topic",
    ):
        assert flag in completed.stdout, f"{flag} missing from --help"


def test_cli_run_raises_tachycardia_alert(cli_run, replay):
    severe = _severe_alerts(cli_run.alerts)
    assert [a["kind"] for a in severe] == ["tachycardia"]
    assert severe[0]["patient_id"] == vitals_job.PATIENT_ID
    low, high = vitals_job.TACHYCARDIA_OFFSET_SEC
    offset = replay.offset_sec(epoch_ms(severe[0]["event_time"]))
    assert low <= offset <= high
    assert "above 140 bpm" in severe[0]["reasons"][0]["text"]


def test_cli_run_alerts_not_repeated(cli_run):
    ids = [a["alert_id"] for a in cli_run.alerts]
    assert len(ids) == len(set(ids))


def test_cli_run_dead_letters_poison(cli_run):
    assert [d["reason"] for d in cli_run.dead_letters] == ["unknown_framing"]
    assert cli_run.dead_letters[0]["payload"] == vitals_job.POISON_PAYLOAD


def test_cli_run_counters_in_vertex_metrics(cli_run, replay):
    readings = len(replay.readings)
    counters = cli_run.counters
    assert counters["vitalwatch_payloads_in"] == readings + 1
    assert counters["vitalwatch_readings_in"] == readings
    assert counters["vitalwatch_readings_on_time"] == readings
    assert counters["vitalwatch_readings_duplicate"] in (0, None)
    assert counters["vitalwatch_readings_late"] is None
    assert counters["vitalwatch_dead_letters_unknown_framing"] == 1
    assert counters["vitalwatch_alerts_severe"] == 1
    assert counters["kafka_io_records_read"] == readings + 1
    # One alert and one dead letter.
    assert counters["kafka_io_records_written"] == 2


def test_cli_run_stops_with_savepoint(cli_run):
    assert cli_run.returncode == 0
    assert "readings_on_time" in cli_run.stdout
    assert cli_run.checkpoints["completed"] >= 2


def test_cli_run_finishes_bundles_before_checkpoints(cli_run):
    # Without it a checkpoint can hold a stage's only output (docs/flink.md).
    assert cli_run.user_config["finishBundleBeforeCheckpointing"] == "true"


def test_cli_run_commits_offsets(cli_run):
    # Flink calls the source's bundle-finalization callbacks, so the group
    # has committed every message that the job read.
    assert cli_run.committed_offset == cli_run.published


# ------------------------------------------------------------ recovery


def _reading_keys(block):
    for sequence in block.sequence.tolist():
        yield block.device_id, f"{block.device_id}|{sequence}".encode()


def _summary_message(element):
    patient_id, summary = element
    return patient_id, f"{summary.t_ref_ms}|{summary.readings}".encode()


def _start_tapped_job(
    flink_cluster, bootstrap, job_name, topics, savepoint=None
):
    """Submit the vitals graph plus the two tap topics, in this process."""
    args = _vitals_args(flink_cluster, bootstrap, job_name, topics, "recovery")
    if savepoint:
        args.append(f"--savepoint_path={savepoint}")
    options = PipelineOptions(args)
    options.view_as(SetupOptions).save_main_session = False
    pipeline = beam.Pipeline(options=options)
    outputs = build_pipeline(pipeline, options)
    (
        outputs["blocks"]
        | "TapReadingKeys" >> beam.FlatMap(_reading_keys)
        | "WriteReadingKeys" >> WriteToKafkaTopic(topics["seen"], bootstrap)
    )
    (
        outputs["summaries"]
        | "TapSummaries" >> beam.Map(_summary_message)
        | "WriteSummaries" >> WriteToKafkaTopic(topics["processed"], bootstrap)
    )
    return pipeline.run()


def _processed_readings(bootstrap, topic) -> dict[int, int]:
    """Map each summary's first event time to its reading count.

    Summaries that a restarted job emits again, for readings after its
    checkpoint, repeat the same key and count, so the map removes them.
    """
    processed = {}
    for _, value in vitals_job.read_topic(bootstrap, topic):
        t_ref_ms, readings = (int(part) for part in value.split(b"|"))
        assert processed.setdefault(t_ref_ms, readings) == readings
    return processed


def _wait_for_processed(bootstrap, topic, expected: int, timeout_sec):
    return wait_until(
        lambda: sum(_processed_readings(bootstrap, topic).values()) == expected,
        timeout_sec,
        f"{expected} readings processed after de-duplication",
    )


@contextlib.contextmanager
def _topics(bootstrap, prefix, names):
    topics = vitals_job.create_topics(bootstrap, prefix, names)
    try:
        yield topics
    finally:
        vitals_job.delete_topics(bootstrap, topics)


def test_recovery_and_savepoint_resume(
    flink_cluster, kafka_broker, replay, cli_run
):
    bootstrap, rest = kafka_broker.bootstrap, flink_cluster.rest
    readings = replay.readings
    # The tachycardia alert (about 271 s) falls in the second part, which
    # is being read when the TaskManager dies. The third part comes after
    # the savepoint, while the heart rate is still above 140 bpm, so a
    # resumed job that lost its state would raise a second alert.
    first, second, third = readings[:150], readings[150:285], readings[285:]
    reference_ids = {a["alert_id"] for a in cli_run.alerts}
    name = _job_name("recovery")
    names = ["vitals", "alerts", "dead-letters", "seen", "processed"]
    with _topics(bootstrap, name, names) as topics:
        first_job, resumed_job = f"{name}-a", f"{name}-b"
        try:
            results = []
            job_id = _submit_and_wait_listed(
                rest,
                first_job,
                lambda: results.append(
                    _start_tapped_job(
                        flink_cluster, bootstrap, first_job, topics
                    )
                ),
            )
            result = results[-1]
            vitals_job.publish_readings(bootstrap, topics["vitals"], first)
            _wait_for_processed(
                bootstrap, topics["processed"], 150, _PROCESS_TIMEOUT_SEC
            )
            done = rest.get(f"/jobs/{job_id}/checkpoints")["counts"]
            rest.wait_for_checkpoints(
                job_id, done["completed"] + 1, _STOP_TIMEOUT_SEC
            )

            half = len(second) // 2
            vitals_job.publish_readings(
                bootstrap, topics["vitals"], second[:half]
            )
            run_script("flink.sh", "kill-taskmanager")
            vitals_job.publish_readings(
                bootstrap, topics["vitals"], second[half:]
            )
            run_script("flink.sh", "start-taskmanager")
            _wait_until_running(rest, first_job)
            _wait_for_processed(
                bootstrap, topics["processed"], 285, _RECOVERY_TIMEOUT_SEC
            )
            restored = rest.get(f"/jobs/{job_id}/checkpoints")["counts"]
            assert restored["restored"] >= 1
            # The alert leaves through a keyed stage and the Kafka sink after
            # the summary that carries its reading, so wait for it before the
            # savepoint: the check is that recovery kept it, not a race.
            wait_until(
                lambda: reference_ids
                <= {
                    a["alert_id"]
                    for a in vitals_job.read_alerts(bootstrap, topics["alerts"])
                },
                _PROCESS_TIMEOUT_SEC,
                "the tachycardia alert after recovery",
            )

            savepoint = rest.stop_with_savepoint(job_id, _STOP_TIMEOUT_SEC)
            state = result.wait_until_finish(duration=_STOP_TIMEOUT_SEC * 1000)
            assert state == PipelineState.DONE
            alerts_before = vitals_job.read_alerts(bootstrap, topics["alerts"])

            vitals_job.publish_readings(bootstrap, topics["vitals"], third)
            resumed = _start_tapped_job(
                flink_cluster, bootstrap, resumed_job, topics, savepoint
            )
            resumed_id = _wait_until_running(rest, resumed_job)
            _wait_for_processed(
                bootstrap,
                topics["processed"],
                len(readings),
                _PROCESS_TIMEOUT_SEC,
            )
            checkpoints = rest.get(f"/jobs/{resumed_id}/checkpoints")
            rest.stop_with_savepoint(resumed_id, _STOP_TIMEOUT_SEC)
            resumed.wait_until_finish(duration=_STOP_TIMEOUT_SEC * 1000)
        finally:
            _cancel_if_running(rest, first_job)
            _cancel_if_running(rest, resumed_job)

        seen = vitals_job.read_topic(bootstrap, topics["seen"])
        alerts = vitals_job.read_alerts(bootstrap, topics["alerts"])
        dead_letters = vitals_job.read_dead_letters(
            bootstrap, topics["dead-letters"]
        )
        processed = _processed_readings(bootstrap, topics["processed"])

    published = {f"{r['device_id']}|{r['sequence']}" for r in readings}
    assert {value.decode() for _, value in seen} == published
    assert sum(processed.values()) == len(readings)
    assert len(processed) == len(readings)
    assert dead_letters == []
    restored_from = checkpoints["latest"]["restored"]
    assert restored_from["is_savepoint"]
    assert restored_from["external_path"] == savepoint

    before_ids = collections.Counter(a["alert_id"] for a in alerts_before)
    after = alerts[len(alerts_before) :]
    assert set(before_ids) == reference_ids
    assert after == []


# --------------------------------------------------------- model refresh


def _promote(root: str, seed: int) -> int:
    bundle = synthetic_bundle(version=0, seed=seed)
    version = registry.save(root, bundle)
    registry.promote(root, version)
    return version


def _counter(rest, job_id: str, name: str) -> int:
    return rest.read_user_counter_metric(job_id, "vitalwatch", name) or 0


def test_promoted_model_reaches_running_job(
    flink_cluster, kafka_broker, tmp_path
):
    """The keyed-state model path on Flink, with a promotion mid-run.

    PeriodicImpulse polls the registry, and each promoted version goes to
    every scoring shard's keyed state. That state must checkpoint, which a
    side input cannot do here (transforms/keyed_scoring.py).
    """
    bootstrap, rest = kafka_broker.bootstrap, flink_cluster.rest
    root = str(tmp_path / "registry")
    _promote(root, seed=1)
    # Scoring waits for the model stream's watermark, which PeriodicImpulse
    # keeps at the wall clock, so this replay ends about now instead of
    # ahead of it. A window is scored when it spans at least half of its
    # 5 minutes. The 250th reading closes the window that ends 180 s into
    # the replay, and the last reading closes the one that ends at 240 s,
    # so each model scores one row.
    minute_ms = 60_000
    start_ms = (int(time.time() * 1000) - 240_000) // minute_ms * minute_ms
    try:
        readings = vitals_job.replay_t430s(start_ms).readings
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")
    half = 250
    name = _job_name("model")
    with _topics(bootstrap, name, ["vitals", "alerts", "dead-letters"]) as t:
        args = _vitals_args(flink_cluster, bootstrap, name, t, name) + [
            f"--model_registry={root}",
            f"--model_refresh_sec={_MODEL_REFRESH_SEC}",
            # The idle watermark follows the wall clock while the test
            # waits between the two halves; keep the second half on time.
            "--allowed_lateness_sec=900",
        ]
        options = PipelineOptions(args)
        options.view_as(SetupOptions).save_main_session = False
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, options)
        try:
            job_id = _submit_and_wait_listed(rest, name, lambda: pipeline.run())
            first_load = wait_until(
                lambda: _counter(rest, job_id, "models_loaded"),
                _PROCESS_TIMEOUT_SEC,
                "model version 1 loaded",
            )
            vitals_job.publish_readings(bootstrap, t["vitals"], readings[:half])
            scored_by_first = wait_until(
                lambda: _counter(rest, job_id, "rows_scored"),
                _PROCESS_TIMEOUT_SEC,
                "feature rows scored by version 1",
            )

            _promote(root, seed=2)
            wait_until(
                lambda: _counter(rest, job_id, "models_loaded") > first_load,
                _PROCESS_TIMEOUT_SEC,
                "model version 2 loaded",
            )
            vitals_job.publish_readings(bootstrap, t["vitals"], readings[half:])
            wait_until(
                lambda: _counter(rest, job_id, "rows_scored") > scored_by_first,
                _PROCESS_TIMEOUT_SEC,
                "feature rows scored by version 2",
            )
            # Checkpoints that include both models in keyed state.
            done = rest.get(f"/jobs/{job_id}/checkpoints")["counts"]
            rest.wait_for_checkpoints(
                job_id, done["completed"] + 2, _STOP_TIMEOUT_SEC
            )
            exceptions = rest.get(f"/jobs/{job_id}/exceptions")
            rejected = _counter(rest, job_id, "models_rejected")
        finally:
            _cancel_if_running(rest, name)

    assert exceptions["exceptionHistory"]["entries"] == []
    assert rejected == 0
