# vitalwatch developer entry points. Every target installs what it needs.
#   make demo   run the pipeline over real recordings and the simulator
#   make test   run the tests, starting the services they need
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): requirements.lock setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipelines.demo

test: $(STAMP)
	bash scripts/run_tests.sh

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info out

-include mk/*.mk
