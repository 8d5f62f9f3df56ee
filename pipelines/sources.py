"""Sources of raw payloads and of the model, chosen by option.

Every source yields (source description, payload bytes) pairs, so that
parsing and everything after it is the same code whatever the source.
"""

import logging

import apache_beam as beam
import fastavro
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from models import registry
from pipelines.options import VitalsOptions
from schemas import record_encoder
from transforms.parse import UnreadableInput

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = "vitalwatch"
# Errors that fastavro raises on a file that is empty, cut short or not Avro.
_UNREADABLE_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    UnicodeDecodeError,
    OSError,
    fastavro.read.SchemaResolutionError,
)


class _ReadAvroFileDoFn(beam.DoFn):
    """Reader of one Avro container file into (source, payload) pairs.

    Each record is framed with the file's own writer schema, so parsing
    decodes current and older vitals schemas and rejects any other schema
    as `unknown_schema`, record by record. A file that cannot be read to
    its end passes on the records read so far, then an `UnreadableInput`
    naming the file and the record where reading stopped. A damaged file
    therefore ends in the dead-letter output instead of failing the job.
    """

    def __init__(self):
        self._unreadable = Metrics.counter(_NAMESPACE, "files_unreadable")

    def process(self, readable_file):
        path = readable_file.metadata.path
        source = f"file:{path}"
        records = 0
        try:
            with readable_file.open(
                compression_type=CompressionTypes.UNCOMPRESSED
            ) as stream:
                reader = fastavro.reader(stream)
                encode = record_encoder(reader.writer_schema)
                for record in reader:
                    payload = encode(record)
                    records += 1
                    yield source, payload
        except _UNREADABLE_ERRORS as error:
            self._unreadable.inc()
            _LOGGER.warning(
                "Avro file %s unreadable after %d records: %s: %s",
                path,
                records,
                type(error).__name__,
                error,
            )
            yield (
                source,
                UnreadableInput(
                    "unreadable_file",
                    f"{path} is not a readable Avro file after {records} "
                    f"records: {type(error).__name__}: {error}",
                ),
            )


def _kafka_config(options: VitalsOptions) -> dict:
    config = {}
    for item in options.kafka_config:
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--kafka_config {key!r} is not KEY=VALUE")
        config[key.strip()] = value.strip()
    return config


class ReadPayloads(beam.PTransform):
    """Read payloads from the source that `--source` names."""

    def __init__(self, options: VitalsOptions):
        super().__init__()
        self._options = options

    def expand(self, begin):
        kind, _, where = self._options.source.partition(":")
        if kind == "avro":
            return self._read_avro(begin, where)
        if kind == "kafka":
            return self._read_kafka(begin, where)
        if kind == "pubsub":
            return (
                begin
                | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=where)
                | "TagPubSubSource" >> beam.Map(lambda p: ("pubsub", p))
            )
        raise ValueError(
            f"--source {self._options.source!r} is invalid; use avro:GLOB, "
            "kafka:TOPIC or pubsub:projects/P/subscriptions/S"
        )

    def _read_avro(self, begin, pattern):
        if not FileSystems.match([pattern])[0].metadata_list:
            raise ValueError(f"--source avro:{pattern} matches no file")
        return (
            begin
            | "MatchAvroFiles" >> fileio.MatchFiles(pattern)
            | "OpenAvroFiles" >> fileio.ReadMatches()
            | "ReadAvroFiles" >> beam.ParDo(_ReadAvroFileDoFn())
        )

    def _read_kafka(self, begin, topic):
        from transforms.kafka_io import ReadVitalsFromKafka

        options = self._options
        return begin | "ReadKafka" >> ReadVitalsFromKafka(
            bootstrap_servers=options.kafka_bootstrap,
            topic=topic,
            group_id=options.kafka_group,
            config=_kafka_config(options),
            bounded=options.kafka_bounded,
            max_read_sec=options.kafka_max_read_sec,
        )


def load_model_or_none(root: str):
    """Load the promoted model; None when none is promoted or it is broken."""
    if not root:
        return None
    try:
        return registry.load_current(root)
    except registry.ModelLoadError as error:
        _LOGGER.error("Cannot load the promoted model: %s", error)
        return None


class _LoadPromotedModelDoFn(beam.DoFn):
    """Load the promoted model each time its version changes.

    Emits None on the first poll when no model can be used yet, so that
    the scoring step does not wait for one. After that it emits only a
    newly promoted version that loads and passes the checks of
    `registry.load`. A version that fails is counted in `models_rejected`
    and logged once, and nothing is emitted, so the side input keeps the
    previous model.
    """

    def __init__(self, root: str):
        self._root = root
        self._loaded = Metrics.counter(_NAMESPACE, "models_loaded")
        self._rejected = Metrics.counter(_NAMESPACE, "models_rejected")
        self._poll_failures = Metrics.counter(_NAMESPACE, "model_poll_failures")

    def setup(self):
        self._seen_version = None
        self._emitted = False

    def process(self, unused_element):
        model = self._poll() if self._root else None
        if model is not None or not self._emitted:
            self._emitted = True
            yield model

    def _poll(self):
        try:
            version = registry.current_version(self._root)
        except (OSError, ValueError) as error:
            self._poll_failures.inc()
            _LOGGER.error("Cannot read the promoted model version: %s", error)
            return None
        if version is None or version == self._seen_version:
            return None
        self._seen_version = version
        try:
            model = registry.load(self._root, version)
        except registry.ModelLoadError as error:
            self._rejected.inc()
            _LOGGER.error("Rejected the promoted model: %s", error)
            return None
        self._loaded.inc()
        _LOGGER.info("Loaded model version %d from %s", version, self._root)
        return model


class ReadModel(beam.PTransform):
    """The promoted model as a one-element PCollection, for a side input.

    Bounded pipelines read the registry once, for a side input. Streaming
    pipelines poll it every `--model_refresh_sec` and emit a model only
    when a newly promoted version loads. The scoring shards keep the
    newest one in keyed state.
    """

    def __init__(self, options: VitalsOptions):
        super().__init__()
        self._options = options

    def expand(self, begin):
        root = self._options.model_registry
        streaming = self._options.view_as(
            beam.options.pipeline_options.StandardOptions
        ).streaming
        if not streaming:
            return (
                begin
                | "RegistryRoot" >> beam.Create([root])
                | "LoadModel" >> beam.ParDo(_LoadPromotedModelDoFn(root))
            )
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        return (
            begin
            | "PollRegistry"
            >> PeriodicImpulse(
                fire_interval=self._options.model_refresh_sec,
                apply_windowing=False,
            )
            | "LoadModel" >> beam.ParDo(_LoadPromotedModelDoFn(root))
        )
