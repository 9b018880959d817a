# The two commands a newcomer needs:
#   make demo   set up .venv and run the whole MNIST pipeline on the local stack
#   make test   set up .venv with the dev extras and run every test
#   make demo-2016  (optional) the 2016 Amazon ML MNIST files (CSV, schema, recipe, sgd.*) through the pipeline
#   make bench  (optional) benchmark the built-in models against scikit-learn
#   make serve  (optional) the local stack over HTTP for the AWS CLI (--endpoint-url), until Ctrl-C
# Offline? Point the MNIST loader at a folder: STEPML_MNIST_DIR=../shared/datasets/mnist make demo

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= balanced
PORT ?= 5000
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: demo demo-2016 serve test lint bench clean

demo: $(VENV)/.local-installed
	$(BIN)/stepml demo --preset $(PRESET)

demo-2016: $(VENV)/.local-installed
	$(BIN)/stepml demo --amazonml-2016

# e.g. make serve PORT=5001; STEPML_MNIST_DIR=... uploads MNIST into the bucket first
serve: $(VENV)/.local-installed
	$(BIN)/stepml local serve --port $(PORT)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint

# Built-in models vs scikit-learn on real MNIST, one table + bench/results.json.
# e.g. make bench BENCH_ARGS="--repeats 3 --wait-quiet 300"
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setup.py builds the mlp's kernels (stepml/models/_kernels.c) into the source tree.
INSTALL_INPUTS := pyproject.toml setup.py stepml/models/_kernels.c

$(VENV)/.local-installed: $(INSTALL_INPUTS) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.dev-installed: $(INSTALL_INPUTS) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.local-installed

$(VENV)/.bench-installed: $(INSTALL_INPUTS) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) stepml-runs .aws-sam .pytest_cache *.egg-info build stepml/models/_kernels*.so
