# Local Kafka broker (one KRaft node on 127.0.0.1) for tests and the
# streaming demo; see docs/kafka.md. Ports come from KAFKA_PORT,
# KAFKA_TLS_PORT and KAFKA_CONTROLLER_PORT (19092, 19093, 19094).
KAFKA_VITALS_PARTITIONS ?= 3

.PHONY: kafka-start kafka-stop kafka-status test-kafka

# Start the broker (the first run downloads Kafka with Maven) and create
# the demo topics if they are missing.
kafka-start:
	bash scripts/kafka.sh start
	bash scripts/kafka.sh topic create vitals $(KAFKA_VITALS_PARTITIONS)
	bash scripts/kafka.sh topic create alerts $(KAFKA_VITALS_PARTITIONS)

kafka-stop:
	bash scripts/kafka.sh stop

kafka-status:
	bash scripts/kafka.sh status

# The tests start the broker themselves when it is not running.
test-kafka: $(STAMP)
	$(PY) -m pytest tests/kafka
