"""Command-line options of the vitals pipeline.

Each flag's help gives what it sets, its unit and its default.
`python -m runners run --help` lists them next to Beam's own options.
"""

from apache_beam.options.pipeline_options import PipelineOptions

from models.drift import DRIFT_PSI_THRESHOLD
from transforms.drift import DRIFT_MIN_ROWS, DRIFT_WINDOW_SEC

# Five-minute windows every minute: long enough for a trend, short enough
# that a new episode moves the features within a minute or two.
_WINDOW_SIZE_SEC = 300
_WINDOW_PERIOD_SEC = 60
# Gateways buffer up to a couple of minutes when a phone loses signal.
_ALLOWED_LATENESS_SEC = 120
# Wearables send every second; a minute without data is a real gap.
_SILENCE_TIMEOUT_SEC = 60
_PATIENT_LEAVE_AFTER_SEC = 1800
_SUPPRESSION_SEC = 600
_MAX_FUTURE_SKEW_SEC = 300
_MODEL_REFRESH_SEC = 60
_MAX_SCORE_BATCH = 4096


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


class VitalsOptions(PipelineOptions):
    """Options specific to vitalwatch."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--source",
            default="",
            help="Where payloads come from: avro:GLOB (Avro container files "
            "of VitalReading or VitalBatch), kafka:TOPIC, or "
            "pubsub:projects/P/subscriptions/S. Default: none (required).",
        )
        parser.add_argument(
            "--kafka_bootstrap",
            default="127.0.0.1:19092",
            help="Kafka bootstrap servers, host:port[,host:port]. "
            "Default 127.0.0.1:19092, the local broker of scripts/kafka.sh.",
        )
        parser.add_argument(
            "--kafka_group",
            default="vitalwatch",
            help="Kafka consumer group id. Default vitalwatch.",
        )
        parser.add_argument(
            "--kafka_config",
            action="append",
            default=[],
            help="Extra librdkafka setting KEY=VALUE for consumers and "
            "producers, repeatable; use it for SASL and TLS, for example "
            "security.protocol=SSL. Values are never logged. Default none.",
        )
        parser.add_argument(
            "--kafka_bounded",
            type=_flag,
            default=False,
            help="Stop at the end offsets seen at start (true) or read "
            "forever (false). Default false.",
        )
        parser.add_argument(
            "--kafka_max_read_sec",
            type=float,
            default=1.0,
            help="Seconds one read of a Kafka partition runs before its "
            "readings go downstream and its offsets are committed. Lower "
            "means lower latency and more bundles. Default 1.0.",
        )
        parser.add_argument(
            "--alerts_topic",
            default="",
            help="Kafka topic for alerts, keyed by patient id. Default: none.",
        )
        parser.add_argument(
            "--dead_letter_topic",
            default="",
            help="Kafka topic for dead letters. Default: none.",
        )
        parser.add_argument(
            "--output_dir",
            default="",
            help="Folder (any Beam filesystem) for alerts and dead-letter "
            "files. Bounded runs only. Default: none.",
        )
        parser.add_argument(
            "--output_format",
            choices=("jsonl", "avro"),
            default="jsonl",
            help="Format of the output files. Default jsonl.",
        )
        parser.add_argument(
            "--model_registry",
            default="",
            help="Model registry root (folder or gs:// prefix); the promoted "
            "version scores the windows. Default: none, so windows are not "
            "scored and only fast-path alerts are raised.",
        )
        parser.add_argument(
            "--model_refresh_sec",
            type=int,
            default=_MODEL_REFRESH_SEC,
            help="In streaming, how often to check the registry for a newly "
            f"promoted model, in seconds. Default {_MODEL_REFRESH_SEC}.",
        )
        parser.add_argument(
            "--window_size_sec",
            type=int,
            default=_WINDOW_SIZE_SEC,
            help=f"Sliding window size in seconds. Default {_WINDOW_SIZE_SEC}.",
        )
        parser.add_argument(
            "--window_period_sec",
            type=int,
            default=_WINDOW_PERIOD_SEC,
            help="Sliding window period in seconds; must divide the size. "
            f"Default {_WINDOW_PERIOD_SEC}.",
        )
        parser.add_argument(
            "--allowed_lateness_sec",
            type=int,
            default=_ALLOWED_LATENESS_SEC,
            help="How long after the watermark a reading may still arrive, "
            "in seconds; later readings go to the dead-letter output as "
            f"late. Default {_ALLOWED_LATENESS_SEC}.",
        )
        parser.add_argument(
            "--silence_timeout_sec",
            type=int,
            default=_SILENCE_TIMEOUT_SEC,
            help="Seconds of event time without readings after which a "
            "device counts as silent. Streaming runs report it from a timer, "
            "bounded runs when readings resume. Default "
            f"{_SILENCE_TIMEOUT_SEC}.",
        )
        parser.add_argument(
            "--patient_leave_after_sec",
            type=int,
            default=_PATIENT_LEAVE_AFTER_SEC,
            help="Seconds of silence after which a patient's state is "
            f"cleared. Default {_PATIENT_LEAVE_AFTER_SEC}.",
        )
        parser.add_argument(
            "--suppression_sec",
            type=int,
            default=_SUPPRESSION_SEC,
            help="Repeats of an alert of the same patient and kind within "
            "this many seconds are suppressed unless the tier rises. "
            f"Default {_SUPPRESSION_SEC}.",
        )
        parser.add_argument(
            "--max_future_skew_sec",
            type=int,
            default=_MAX_FUTURE_SKEW_SEC,
            help="Readings stamped further than this many seconds ahead of "
            "the processing time are dead-lettered. Default "
            f"{_MAX_FUTURE_SKEW_SEC}.",
        )
        parser.add_argument(
            "--max_score_batch",
            type=int,
            default=_MAX_SCORE_BATCH,
            help="Largest number of feature rows scored in one model call. "
            f"Default {_MAX_SCORE_BATCH}.",
        )
        parser.add_argument(
            "--drift_window_sec",
            type=int,
            default=DRIFT_WINDOW_SEC,
            help="Event-time window over which feature drift (the PSI of "
            "each feature against the scoring model's training data) is "
            f"measured, in seconds. Default {DRIFT_WINDOW_SEC}.",
        )
        parser.add_argument(
            "--drift_psi_threshold",
            type=float,
            default=DRIFT_PSI_THRESHOLD,
            help="PSI of a feature above which a window yields a drift "
            f"event. Default {DRIFT_PSI_THRESHOLD}.",
        )
        parser.add_argument(
            "--drift_min_rows",
            type=int,
            default=DRIFT_MIN_ROWS,
            help="Minimum number of feature rows of one model version in a "
            "drift window for its PSI to be computed. Windows with fewer are "
            "counted in drift_windows_too_small and skipped. Default "
            f"{DRIFT_MIN_ROWS}.",
        )

    def kafka_client_config(self) -> dict[str, str]:
        """Return the `--kafka_config` settings as librdkafka properties.

        Raises:
            ValueError: If an entry is not KEY=VALUE. The message names the
                key only, because values can be secrets.
        """
        config = {}
        for item in self.kafka_config:
            key, separator, value = item.partition("=")
            if not separator or not key.strip():
                raise ValueError(
                    f"--kafka_config {key.strip()!r} is not KEY=VALUE"
                )
            config[key.strip()] = value.strip()
        return config

    def validate_vitals(self) -> list[str]:
        """Return a list of problems with the option values."""
        problems = []
        for name in (
            "window_size_sec",
            "window_period_sec",
            "silence_timeout_sec",
            "patient_leave_after_sec",
            "max_score_batch",
            "kafka_max_read_sec",
            "drift_window_sec",
            "drift_psi_threshold",
            "drift_min_rows",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"--{name} must be positive")
        for name in (
            "allowed_lateness_sec",
            "suppression_sec",
            "max_future_skew_sec",
        ):
            if getattr(self, name) < 0:
                problems.append(f"--{name} must not be negative")
        if (
            self.window_size_sec > 0
            and self.window_period_sec > 0
            and self.window_size_sec % self.window_period_sec
        ):
            problems.append(
                f"--window_size_sec {self.window_size_sec} is not a multiple "
                f"of --window_period_sec {self.window_period_sec}"
            )
        return problems
