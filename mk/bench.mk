# Benchmarks; docs/benchmarks.md has the results and how to read them.
#   make bench           throughput, memory and streaming latency
#   make bench-small-blocks  CPU per one-reading message, block path
#                        against the small-block path
#   make bench-venv      the separate virtualenv with a newer apache-beam,
#                        for Beam's own AnomalyDetection
# BENCH_OUT sets the results folder (default out/bench). The latency run
# uses the Kafka broker and Flink cluster of 'make kafka-start' and
# 'make flink-start'.
BENCH_OUT ?= out/bench
BENCH_VENV := .cache/bench-venv
# apache_beam.ml.anomaly and its PyOD wrapper are missing from 2.62.0, the
# version the project pins; 2.77.0 has both.
BENCH_BEAM_VERSION ?= 2.77.0

.PHONY: bench bench-venv bench-throughput bench-memory bench-latency \
	bench-small-blocks

bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet \
		"apache-beam==$(BENCH_BEAM_VERSION)" pyod scikit-learn
	touch $@

# The comparison runs the pipeline on the FnApiRunner and on the local
# Flink cluster, which it starts when it is not running.
bench-throughput: $(STAMP) bench-venv flink-start
	$(PY) -m bench.throughput --out $(BENCH_OUT) \
		--flink_master localhost:$${FLINK_REST_PORT:-8081} \
		--flink_job_server_jar "$$(bash scripts/flink_job_server.sh)"

bench-memory: $(STAMP)
	$(PY) -m bench.memory --out $(BENCH_OUT)

bench-small-blocks: $(STAMP)
	$(PY) -m bench.small_blocks --out $(BENCH_OUT)

# Starts the local Kafka broker and Flink cluster when they are not running.
bench-latency: $(STAMP) kafka-start flink-start
	$(PY) -m bench.latency_flink --out $(BENCH_OUT) \
		--flink_job_server_jar "$$(bash scripts/flink_job_server.sh)"

bench: bench-throughput bench-memory bench-latency
	$(PY) -m bench.plots --results $(BENCH_OUT) --images docs/img
