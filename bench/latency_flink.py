"""Event time to alert latency of the streaming pipeline, from real Kafka.

A producer in this process sends one VitalReading per device per second
to a new topic, with the event time and the Kafka message timestamp set
to the wall clock at sending. Each device gets one tachycardia episode
(heart rate 160 bpm for 20 s) at a random time, so that the fast path
raises alerts all through the run. The pipeline runs streaming in a
subprocess and writes alerts to a second topic, which a consumer here
reads. Latency is the consumer's arrival time minus the alert's event
time, the event time of the reading that completed the episode.

Every few seconds the benchmark samples the consumer lag of the
pipeline's group: end offsets minus committed offsets, summed over
partitions. A rate counts as sustained when the lag of the last third
of the run does not grow.

Runners: FlinkRunner (the default) with LOOPBACK workers, or the
BundleBasedDirectRunner. NOTE: the BundleBasedDirectRunner with Beam
2.62.0 rejects the project's Kafka source, a splittable DoFn, when the
graph is built ("ProcessKeyedElements/GroupByKey ... was not replaced as
expected"), so only the FlinkRunner path gives numbers. Results and how
to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.latency_flink --bootstrap 127.0.0.1:19092
"""

import argparse
import json
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench import common
from runners.cli import FLINK_DEFAULTS
from schemas import ALERT, decode_record, encode_reading, epoch_ms

_PARTITIONS = 2
_EPISODE_SEC = 20
_TACHYCARDIA_BPM = 160.0
_LAG_SAMPLE_SEC = 5.0
# The fast path needs 8 s above 140 bpm. Episodes start this long after
# producing starts, so that the pipeline is reading by then.
_STARTUP_SEC = 45
_FINAL_STATES = {"FINISHED", "CANCELED", "FAILED"}


def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, _PARTITIONS, 1) for name in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def _flush_experiment(args) -> list[str]:
    # Beam's data plane, on the SDK and on the runner side, sends a
    # bundle's elements when its buffer fills or the bundle ends. With
    # this experiment it also sends them at this interval.
    if args.data_buffer_time_limit_ms <= 0:
        return []
    limit = args.data_buffer_time_limit_ms
    return [f"--experiments=data_buffer_time_limit_ms={limit}"]


def _runner_args(args) -> list[str]:
    if args.runner != "FlinkRunner":
        return [f"--runner={args.runner}"]
    # LOOPBACK runs the SDK harness in the serving process, so the cluster
    # needs no Docker and no Python install.
    return [
        "--runner=FlinkRunner",
        f"--flink_master={args.flink_master}",
        f"--flink_job_server_jar={args.flink_job_server_jar}",
        "--environment_type=LOOPBACK",
        "--parallelism=1",
        f"--job_name={args.job_name}",
        f"--checkpointing_interval={args.checkpointing_interval_ms}",
        f"--max_bundle_size={args.max_bundle_size}",
        f"--max_bundle_time_mills={args.max_bundle_time_ms}",
        *_flush_experiment(args),
        f"--max_cache_memory_usage_mb={args.max_cache_memory_usage_mb}",
        *FLINK_DEFAULTS,
    ]


def _serve(args) -> int:
    """Run the pipeline streaming until killed; alerts go to Kafka."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.vitals_pipeline import build_pipeline
    from transforms.kafka_io import WriteAlertsToKafka

    options = PipelineOptions(
        [
            *_runner_args(args),
            "--streaming",
            f"--source=kafka:{args.vitals_topic}",
            f"--kafka_bootstrap={args.bootstrap}",
            f"--kafka_group={args.group}",
            f"--model_registry={args.registry}",
            f"--kafka_max_read_sec={args.kafka_max_read_sec}",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    outputs = build_pipeline(pipeline, options)
    # The benchmark adds the alert sink itself and passes no
    # --alerts_topic, so the graph has exactly one sink whatever
    # build_pipeline does with that option.
    outputs["alerts"] | "WriteAlertsToKafka" >> WriteAlertsToKafka(
        args.alerts_topic, args.bootstrap
    )
    # The parent stops this process with SIGTERM. Exiting through
    # SystemExit runs Beam's exit handler, which stops the job server
    # JVM that the FlinkRunner started; a plain SIGTERM left it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pipeline.run().wait_until_finish()
    return 0


def _reading(device: int, sequence: int, now_ms: int, tachy: bool) -> dict:
    heart_rate = _TACHYCARDIA_BPM if tachy else 72.0 + (device % 7)
    return {
        "patient_id": f"bench-{device:05d}",
        "device_id": f"dev-{device:05d}",
        "sequence": sequence,
        "event_time": now_ms,
        "heart_rate_bpm": heart_rate,
        "spo2_pct": 97.0,
        "rr_interval_ms": 60_000.0 / heart_rate,
        "signal_quality": 0.95,
        "pulse_rate_bpm": heart_rate,
        "rr_rmssd_ms": 35.0,
        "firmware": "bench-1",
    }


def _produce(args, stop_at: float) -> int:
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    rng = np.random.default_rng(args.seed)
    span = max(args.seconds - _STARTUP_SEC - _EPISODE_SEC, 1)
    onsets = _STARTUP_SEC + rng.integers(0, span, args.devices)
    started, second, sent = time.time(), 0, 0
    while time.time() < stop_at:
        now_ms = int(time.time() * 1000)
        for device in range(args.devices):
            tachy = 0 <= second - onsets[device] < _EPISODE_SEC
            record = _reading(device, second, now_ms, tachy)
            producer.produce(
                args.vitals_topic,
                value=encode_reading(record),
                key=record["patient_id"].encode(),
                timestamp=now_ms,
            )
            sent += 1
        producer.poll(0)
        second += 1
        time.sleep(max(0.0, started + second - time.time()))
    producer.flush(30)
    return sent


def _consume_alerts(args, stop: threading.Event, latencies: list) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-alerts-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.alerts_topic])
    while not stop.is_set():
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        arrived_ms = time.time() * 1000
        alert = decode_record(ALERT, message.value())
        event_ms = epoch_ms(alert["event_time"])
        latencies.append((alert["kind"], arrived_ms - event_ms, arrived_ms))
    consumer.close()


def _lag(args) -> int:
    consumer = Consumer(
        {"bootstrap.servers": args.bootstrap, "group.id": args.group}
    )
    partitions = [
        TopicPartition(args.vitals_topic, p) for p in range(_PARTITIONS)
    ]
    committed = consumer.committed(partitions, timeout=10)
    total = 0
    for partition in committed:
        _, high = consumer.get_watermark_offsets(partition, timeout=10)
        total += high - max(partition.offset, 0)
    consumer.close()
    return total


def _cancel_flink_job(flink_master: str, job_name: str) -> None:
    """Cancel the unfinished Flink jobs named `job_name`."""
    base = f"http://{flink_master}"
    with urllib.request.urlopen(f"{base}/jobs/overview", timeout=10) as reply:
        jobs = json.load(reply)["jobs"]
    for job in jobs:
        if job["name"] == job_name and job["state"] not in _FINAL_STATES:
            request = urllib.request.Request(
                f"{base}/jobs/{job['jid']}?mode=cancel", method="PATCH"
            )
            urllib.request.urlopen(request, timeout=10).close()


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "count": len(values),
        "p50_ms": round(float(p50)),
        "p95_ms": round(float(p95)),
        "p99_ms": round(float(p99)),
        "max_ms": round(max(values)),
    }


def _lag_grows(samples: list[tuple[float, int]], rate: float) -> bool:
    """Whether the lag of the last third of the run rises steadily.

    Committed offsets advance only at checkpoints, so the lag saws up and
    down by a checkpoint interval of readings. A fitted slope above 5 % of
    the produced rate (readings/s) counts as growth, well above the
    sawtooth's effect on the fit.
    """
    tail = samples[len(samples) * 2 // 3 :]
    if len(tail) < 2:
        return False
    slope = np.polyfit([t for t, _ in tail], [lag for _, lag in tail], 1)[0]
    return bool(slope > 0.05 * rate)


def measure(args) -> dict:
    """Run producer, pipeline and alert consumer for one rate."""
    suffix = uuid.uuid4().hex[:8]
    args.vitals_topic = f"bench-vitals-{suffix}"
    args.alerts_topic = f"bench-alerts-{suffix}"
    args.group = f"bench-pipeline-{suffix}"
    args.job_name = f"bench-latency-{suffix}"
    _create_topics(args.bootstrap, [args.vitals_topic, args.alerts_topic])
    command = [
        sys.executable,
        "-m",
        "bench.latency_flink",
        "--serve",
        f"--bootstrap={args.bootstrap}",
        f"--vitals_topic={args.vitals_topic}",
        f"--alerts_topic={args.alerts_topic}",
        f"--group={args.group}",
        f"--job_name={args.job_name}",
        f"--registry={args.registry}",
        f"--runner={args.runner}",
        f"--flink_master={args.flink_master}",
        f"--flink_job_server_jar={args.flink_job_server_jar}",
        f"--checkpointing_interval_ms={args.checkpointing_interval_ms}",
        f"--max_bundle_size={args.max_bundle_size}",
        f"--max_bundle_time_ms={args.max_bundle_time_ms}",
        f"--kafka_max_read_sec={args.kafka_max_read_sec}",
        f"--data_buffer_time_limit_ms={args.data_buffer_time_limit_ms}",
        f"--max_cache_memory_usage_mb={args.max_cache_memory_usage_mb}",
    ]
    log = open(pathlib.Path(args.out) / f"latency-{args.devices}.log", "w")
    pipeline = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        latencies, lag_samples = [], []
        stop = threading.Event()
        reader = threading.Thread(
            target=_consume_alerts, args=(args, stop, latencies), daemon=True
        )
        reader.start()
        started = time.time()
        producer = threading.Thread(
            target=lambda: _produce(args, started + args.seconds), daemon=True
        )
        producer.start()
        while producer.is_alive():
            time.sleep(_LAG_SAMPLE_SEC)
            lag_samples.append((time.time() - started, _lag(args)))
        time.sleep(args.drain_sec)
        stop.set()
        reader.join(10)
    finally:
        # Also on SIGTERM or Ctrl-C, so no job or job server outlives the
        # benchmark.
        if args.runner == "FlinkRunner":
            # Killing the LOOPBACK process alone leaves the Flink job
            # restarting without its SDK harness, loading the next run.
            _cancel_flink_job(args.flink_master, args.job_name)
        pipeline.terminate()
        pipeline.wait(30)
        log.close()
    halfway_ms = (started + args.seconds / 2) * 1000
    return {
        "devices": args.devices,
        "seconds": args.seconds,
        "runner": args.runner,
        "settings": {
            "max_bundle_size": args.max_bundle_size,
            "max_bundle_time_ms": args.max_bundle_time_ms,
            "kafka_max_read_sec": args.kafka_max_read_sec,
            "data_buffer_time_limit_ms": args.data_buffer_time_limit_ms,
            "max_cache_memory_usage_mb": args.max_cache_memory_usage_mb,
            "checkpointing_interval_ms": args.checkpointing_interval_ms,
        },
        "pipeline_exit_code": pipeline.returncode,
        "tachycardia": _percentiles(
            [ms for kind, ms, _ in latencies if kind == "tachycardia"]
        ),
        # The job starts reading 40 to 60 s after producing starts, so the
        # first alerts carry that backlog. The second half shows the
        # steady state.
        "tachycardia_second_half": _percentiles(
            [
                ms
                for kind, ms, arrived_ms in latencies
                if kind == "tachycardia" and arrived_ms >= halfway_ms
            ]
        ),
        "all_alerts": _percentiles([ms for _, ms, _ in latencies]),
        "lag_samples": lag_samples,
        "lag_grows": _lag_grows(lag_samples, args.devices),
    }


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.latency_flink")
    parser.add_argument(
        "--bootstrap",
        default="127.0.0.1:19092",
        help="Kafka bootstrap servers. Default 127.0.0.1:19092, the broker "
        "of 'make kafka-start'.",
    )
    parser.add_argument(
        "--rates",
        default="100,300,1000",
        help="Comma-separated device counts to run, each device sending "
        "1 reading/s. Default 100,300,1000.",
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=150,
        help="Producing time per rate, in seconds. Default 150.",
    )
    parser.add_argument(
        "--drain_sec",
        type=int,
        default=20,
        help="Seconds to keep reading alerts after producing stops. "
        "Default 20.",
    )
    parser.add_argument(
        "--out", default="out/bench", help="Results folder. Default out/bench."
    )
    parser.add_argument(
        "--runner",
        choices=("BundleBasedDirectRunner", "FlinkRunner"),
        default="FlinkRunner",
        help="Runner of the pipeline. Default FlinkRunner.",
    )
    parser.add_argument(
        "--flink_master",
        default="localhost:8081",
        help="Flink REST address. Default localhost:8081, the cluster of "
        "'make flink-start'.",
    )
    parser.add_argument(
        "--flink_job_server_jar",
        default="",
        help="Beam Flink job server jar, as printed by "
        "'make flink-job-server'. Default: none.",
    )
    parser.add_argument(
        "--checkpointing_interval_ms",
        type=int,
        default=10_000,
        help="Flink checkpoint interval in milliseconds. Default 10000.",
    )
    parser.add_argument(
        "--max_bundle_size",
        type=int,
        default=1000,
        help="Flink's --max_bundle_size, elements per bundle. Default 1000.",
    )
    parser.add_argument(
        "--max_bundle_time_ms",
        type=int,
        default=1000,
        help="Flink's --max_bundle_time_mills, longest bundle in "
        "milliseconds. Default 1000.",
    )
    parser.add_argument(
        "--kafka_max_read_sec",
        type=float,
        default=1.0,
        help="The pipeline's --kafka_max_read_sec. Default 1.0.",
    )
    parser.add_argument(
        "--data_buffer_time_limit_ms",
        type=int,
        default=0,
        help="Beam's data_buffer_time_limit_ms experiment: longest time, in "
        "milliseconds, that elements wait in a data buffer inside a "
        "bundle. Default 0, which sends them when the buffer fills or "
        "the bundle ends. With apache-beam 2.62.0 a value of 20 made the "
        "Flink job fail (EOFException decoding the SDK's output).",
    )
    parser.add_argument(
        "--max_cache_memory_usage_mb",
        type=int,
        default=100,
        help="Size of the SDK harness's state cache in MB; 0 turns it off, "
        "so that state is read from the runner on every access. Default "
        "100, Beam's default.",
    )
    parser.add_argument("--seed", type=int, default=7, help="Default 7.")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    for internal in (
        "vitals_topic",
        "alerts_topic",
        "group",
        "registry",
        "job_name",
    ):
        parser.add_argument(f"--{internal}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Measure latency and lag at each rate; write latency.json."""
    args = _parse(argv)
    if args.serve:
        return _serve(args)
    # SIGTERM exits through SystemExit, so measure() stops its pipeline.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": common.machine(), "runs": []}
    args.registry = common.train_registry(out / "latency-model", args.seed)
    for devices in (int(d) for d in args.rates.split(",")):
        common.progress(f"latency: {devices} devices x 1 reading/s")
        args.devices = devices
        results["runs"].append(measure(args))
        common.write_json(out / "latency.json", results)
    print(json.dumps(results["runs"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
