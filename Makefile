# The two commands README promises on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# .venv: the service alone for `make serve` (no torch), or the dev environment for
# `make test` (the service, the exporter with torch, and the test tools).
VENV := .venv
BIN := $(VENV)/bin
# The exporter's environment (torch, CPU build where PyTorch's index is reachable), kept
# out of the service's: scripts/install-export-env.sh. EXPORT_VENV=.venv reuses the dev one.
EXPORT_VENV ?= .venv-export
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
ARCH ?= densenet121
# auto: ImageNet weights when they can be downloaded, else seeded random weights (loudly).
# imagenet: ImageNet weights or fail. random: seeded random weights.
WEIGHTS ?= auto
MODEL_DIR ?= models
# MODELS="densenet121 densenet169": serve several, as a model repository (the first is the
# default model). Empty: serve ARCH alone.
MODELS ?=
# What ensure-model.sh runs before its first export. Through a variable: a recipe line that
# names $(MAKE) itself runs even under `make -n`.
INSTALL_EXPORT_CMD = $(MAKE) -s --no-print-directory install-export PYTHON=$(PYTHON)

.PHONY: serve test install install-export install-dev lint typecheck pytest containers model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[export,dev]'
	touch $@ $(VENV)/.installed

$(EXPORT_VENV)/.installed-export: pyproject.toml
	PYTHON=$(PYTHON) EXPORT_VENV=$(EXPORT_VENV) TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
	  scripts/install-export-env.sh
	touch $@

install: $(VENV)/.installed
install-export: $(EXPORT_VENV)/.installed-export
install-dev: $(VENV)/.installed-dev

## model: export the served model unless it is already there (prints its path last)
model: install-export
	@ARCH=$(ARCH) WEIGHTS=$(WEIGHTS) MODEL_DIR=$(MODEL_DIR) PYTHON=$(EXPORT_VENV)/bin/python \
	  scripts/ensure-model.sh >&2

## serve: DENSENET_MODEL_REPOSITORY or DENSENET_MODEL_PATH from the environment as they are
## (nothing is exported); else the MODELS repository; else ARCH alone. The export
## environment is installed only when a model has to be exported.
serve: install
	@export WEIGHTS=$(WEIGHTS) MODEL_DIR=$(MODEL_DIR) PYTHON=$(EXPORT_VENV)/bin/python \
	  INSTALL_EXPORT="$(INSTALL_EXPORT_CMD)"; \
	if [ -n "$${DENSENET_MODEL_REPOSITORY:-}$${DENSENET_MODEL_PATH:-}" ]; then \
	  exec $(BIN)/python -m app; \
	elif [ -n "$(strip $(MODELS))" ]; then \
	  repository=$$(MODELS="$(MODELS)" scripts/ensure-repository.sh) && \
	  DENSENET_MODEL_REPOSITORY=$$repository \
	  DENSENET_DEFAULT_MODEL=$${DENSENET_DEFAULT_MODEL:-$(firstword $(MODELS))} \
	  exec $(BIN)/python -m app; \
	else \
	  model=$$(ARCH=$(ARCH) scripts/ensure-model.sh) && \
	  DENSENET_MODEL_PATH=$$model exec $(BIN)/python -m app; \
	fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	BIN=$(BIN) scripts/check-containers.sh
	$(BIN)/bandit -q -r app model_export -c pyproject.toml

typecheck: install-dev
	$(BIN)/mypy

# Prometheus, Chromium and HAProxy (Debian packages) back the integration, browser and
# replicas tests, the npm validators the Kubernetes manifest tests, .venv-kserve (KServe's
# SDK, kept apart: it pins older protobuf) the KServe client test, and .perf-analyzer
# (Triton's perf_analyzer with Debian 13's glibc beside it) the perf_analyzer test; outside
# CI those tests skip when they cannot be installed.
pytest: install-dev
	@scripts/install-prometheus.sh || [ -z "$$CI" ]
	@scripts/install-chromium.sh || [ -z "$$CI" ]
	@scripts/install-haproxy.sh || [ -z "$$CI" ]
	@scripts/install-kubernetes-tools.sh || [ -z "$$CI" ]
	@PYTHON=$(PYTHON) scripts/install-kserve-client.sh || [ -z "$$CI" ]
	@PYTHON=$(BIN)/python bench/perf_analyzer/install.sh >/dev/null || [ -z "$$CI" ]
	$(BIN)/python -m pytest

# The CPU image built and run with podman on a locally bootstrapped Debian base, with
# compose and Prometheus, and the GPU image started without a GPU (docs/development.md,
# "Container checks"). About 4 minutes with the base cached (216 s on 2 cores, 2026-12-06;
# the first base bootstrap adds a few) and about 8 GB of disk while the images are built;
# outside CI it skips when podman cannot be installed.
containers: install-dev
	BIN=$(BIN) scripts/container-test.sh

test: lint typecheck pytest containers

clean:
	rm -rf $(VENV) $(EXPORT_VENV) .venv-kserve .perf-analyzer .mypy_cache .ruff_cache .pytest_cache
