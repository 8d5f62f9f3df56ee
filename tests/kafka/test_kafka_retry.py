"""Retries of Kafka requests while a fresh broker elects its coordinator."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from transforms import kafka_io


def _failing(codes):
    remaining = list(codes)

    def call():
        if remaining:
            raise KafkaException(KafkaError(remaining.pop(0)))
        return "ok"

    return call


def test_coordinator_errors_retried(monkeypatch):
    monkeypatch.setattr(kafka_io, "_RETRY_DELAY_SEC", 0)
    starting = [
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    ]
    assert kafka_io._retry_retriable(_failing(starting)) == "ok"


def test_other_errors_raised_at_once(monkeypatch):
    monkeypatch.setattr(kafka_io, "_RETRY_DELAY_SEC", 0)
    with pytest.raises(KafkaException):
        kafka_io._retry_retriable(
            _failing([KafkaError.TOPIC_AUTHORIZATION_FAILED])
        )


def test_retries_give_up(monkeypatch):
    monkeypatch.setattr(kafka_io, "_RETRY_DELAY_SEC", 0)
    endless = [KafkaError.NOT_COORDINATOR] * (kafka_io._RETRIES + 1)
    with pytest.raises(KafkaException):
        kafka_io._retry_retriable(_failing(endless))
