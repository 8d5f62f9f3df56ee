"""Decode Avro payloads into reading blocks and reject what is invalid.

`ParseVitals` accepts raw payloads from any source (Kafka, Pub/Sub, files)
so that everything downstream of the source is the same code. Every
payload ends either in a valid `ReadingBlock` or in a dead-letter record
with a reason; a payload with some invalid readings yields both.
"""

import dataclasses
import logging
import time
from collections.abc import Callable

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import VITAL_BATCH, DecodeError, decode_payload
from transforms import validate
from transforms.readings import block_from_batch, block_from_reading

_LOGGER = logging.getLogger(__name__)

DEAD_LETTER_TAG = "dead_letter"
_METRICS_NAMESPACE = "vitalwatch"


@dataclasses.dataclass(frozen=True)
class UnreadableInput:
    """Input that a source could not split into payloads.

    A source passes it on in place of a payload, so that parsing turns it
    into a dead letter like any other rejected input.

    Attributes:
        reason: Dead-letter reason code.
        detail: What failed and where, without any field value.
    """

    reason: str
    detail: str


def split_source(element) -> tuple[str, bytes | UnreadableInput]:
    """Accept a bare payload or a (source description, payload) pair."""
    if isinstance(element, (bytes, bytearray, memoryview)):
        return "", bytes(element)
    source, payload = element
    if isinstance(payload, UnreadableInput):
        return str(source), payload
    return str(source), bytes(payload)


class _ParseVitalsDoFn(beam.DoFn):
    def __init__(
        self,
        resolver_factory: Callable[[], Callable] | None,
        max_future_skew_ms: int,
        clock: Callable[[], float],
    ):
        self._resolver_factory = resolver_factory
        self._max_future_skew_ms = max_future_skew_ms
        self._clock = clock
        self._payloads = Metrics.counter(_METRICS_NAMESPACE, "payloads_in")
        self._readings = Metrics.counter(_METRICS_NAMESPACE, "readings_in")
        self._valid = Metrics.counter(_METRICS_NAMESPACE, "readings_valid")
        self._dead_letters = {}

    def setup(self):
        self._resolver = (
            self._resolver_factory() if self._resolver_factory else None
        )

    def _count_dead_letter(self, reason: str) -> None:
        counter = self._dead_letters.get(reason)
        if counter is None:
            counter = Metrics.counter(
                _METRICS_NAMESPACE, f"dead_letters_{reason}"
            )
            self._dead_letters[reason] = counter
        counter.inc()

    def _reject(self, payload, reason, detail, source, now_ms):
        self._count_dead_letter(reason)
        return beam.pvalue.TaggedOutput(
            DEAD_LETTER_TAG,
            validate.dead_letter(payload, reason, detail, source, now_ms),
        )

    def process(self, element):
        source, payload = split_source(element)
        now_ms = int(self._clock() * 1000)
        self._payloads.inc()
        if isinstance(payload, UnreadableInput):
            yield self._reject(
                b"", payload.reason, payload.detail, source, now_ms
            )
            return
        try:
            kind, record = decode_payload(payload, self._resolver)
            is_batch = kind == VITAL_BATCH
            nan_masks = validate.nan_mask_of_record(is_batch, record)
            if is_batch:
                block = block_from_batch(record, source)
            else:
                block = block_from_reading(record, source)
        except DecodeError as error:
            yield self._reject(
                payload, error.reason, error.detail, source, now_ms
            )
            return
        except (ValueError, KeyError, TypeError) as error:
            yield self._reject(
                payload, "invalid_record", str(error), source, now_ms
            )
            return
        yield from self._validate(block, nan_masks, payload, now_ms)

    def _validate(self, block, nan_masks, payload, now_ms):
        self._readings.inc(len(block))
        if not block.patient_id or not block.device_id:
            missing = "patient_id" if not block.patient_id else "device_id"
            yield self._reject(
                payload,
                "missing_id",
                f"{missing} is empty",
                block.source,
                now_ms,
            )
            return
        valid, reasons = validate.invalid_reasons(
            block, nan_masks, now_ms, self._max_future_skew_ms
        )
        if not reasons:
            # Every reading is valid, the usual case: skip the mask work.
            if len(block):
                self._valid.inc(len(block))
                yield block
            return
        invalid_index = (~valid).nonzero()[0]
        for i, (reason, detail) in zip(invalid_index, reasons, strict=False):
            yield self._reject(
                validate.reading_payload(block, int(i)),
                reason,
                detail,
                block.source,
                now_ms,
            )
        if valid.any():
            kept = block if valid.all() else block.take(valid)
            self._valid.inc(len(kept))
            yield kept


class ParseVitals(beam.PTransform):
    """Decode payloads into `ReadingBlock`s and dead-letter the rest.

    The input contains bytes or (source, bytes) pairs. The output is a tuple
    of PCollections: `.blocks` with valid readings and `.dead_letter` with
    DeadLetter records.

    Args:
        resolver_factory: Builds a Confluent schema-id resolver on each
            worker, or None to reject Confluent-framed payloads.
        max_future_skew_ms: Reject event times further ahead of the
            processing time than this. Default 5 min.
        clock: Wall-clock function in seconds, replaceable in tests.
    """

    def __init__(
        self,
        resolver_factory=None,
        max_future_skew_ms: int = validate.MAX_FUTURE_SKEW_MS,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self._resolver_factory = resolver_factory
        self._max_future_skew_ms = max_future_skew_ms
        self._clock = clock

    def expand(self, payloads):
        parsed = payloads | "DecodeAndValidate" >> beam.ParDo(
            _ParseVitalsDoFn(
                self._resolver_factory, self._max_future_skew_ms, self._clock
            )
        ).with_outputs(DEAD_LETTER_TAG, main="blocks")
        return parsed
