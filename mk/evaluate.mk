# Detection quality: vitalwatch against labelled recordings, simulated
# patients, NAB and baselines; see docs/benchmarks.md. DATA sets the data
# folder (default ../shared/data), EVALUATE_ARGS passes more options.
DATA ?= ../shared/data
EVALUATE_ARGS ?=

.PHONY: evaluate

evaluate: $(STAMP)
	$(PY) -m bench.evaluate --data $(DATA) --out out/evaluate $(EVALUATE_ARGS)
