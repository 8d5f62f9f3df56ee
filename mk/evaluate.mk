# Detection quality: vitalwatch against labelled recordings, simulated
# patients, NAB and baselines; see docs/benchmarks.md. DATA sets the data
# folder (default $VITALWATCH_DATA, else ../shared/data, as for make demo),
# EVALUATE_ARGS passes more options.
DATA ?= $(or $(VITALWATCH_DATA),../shared/data)
EVALUATE_ARGS ?=

.PHONY: evaluate

# bench-venv holds the newer apache-beam that Beam's AnomalyDetection
# baseline needs (mk/bench.mk).
evaluate: $(STAMP) bench-venv
	$(PY) -m bench.evaluate --data $(DATA) --out out/evaluate $(EVALUATE_ARGS)
