# gpu-features. On a fresh checkout `make precompute`, `make train` and `make test`
# work by themselves: each creates .venv with access to the system site-packages
# (so a GPU pod's own torch and cupy are used) and installs only what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
STORE ?= data/features/demo
RUN ?= runs/demo
# CI and laptops get the CPU build from local disk; a machine that already has torch keeps it.
TORCH ?= torch==2.13.0
# NVRTC alone (no GPU needed) lets the tests compile the GPU program exactly as CuPy does.
NVRTC ?= nvidia-cuda-nvrtc==13.0.88
BENCH_OUT ?= bench/results

.DEFAULT_GOAL := help
.PHONY: help precompute train test test-gpu verify inspect bench clean

help:
	@echo "make precompute   compute the demo store ($(STORE)) from the embedded synthetic bars"
	@echo "make train        pretrain Jade on the demo store (builds it first if missing) -> $(RUN)"
	@echo "make test         run the test suite (CPU; GPU tests skip with their reason)"
	@echo "make test-gpu     GPU tests + benchmarks on a CUDA machine, no installs, table last"
	@echo "make verify       recompute sampled bars of the demo store and compare bits"
	@echo "make inspect      statistics, swing rates and warnings of the demo store"
	@echo "make bench        CPU benchmarks (bench/features.py, bench/train.py)"
	@echo "make clean        remove .venv, data/, runs/, caches and build output"

# --- environments ------------------------------------------------------------------------

$(VENV)/.core: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import numpy, pyarrow, safetensors, rich, filelock" 2>/dev/null \
	  || $(PIP) numpy pyarrow safetensors rich "filelock>=3.20"
	@$(PY) -c "import setuptools, wheel" 2>/dev/null || $(PIP) "setuptools>=68" wheel
	@$(PIP) --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.torch: $(VENV)/.core
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) $(TORCH)
	@touch $@

$(VENV)/.dev: $(VENV)/.torch
	@$(PY) -c "import pytest, matplotlib" 2>/dev/null || $(PIP) pytest matplotlib
	@$(PY) -c "import importlinter" 2>/dev/null || $(PIP) "import-linter==2.17"
	@$(PY) -m pip show -q nvidia-cuda-nvrtc >/dev/null 2>&1 || $(PIP) $(NVRTC) \
	  || echo "note: $(NVRTC) not installed; the NVRTC compile check will skip"
	@touch $@

# --- main jobs ---------------------------------------------------------------------------

precompute: $(VENV)/.core
	$(VENV)/bin/gpu-features precompute --output $(STORE) --overwrite

$(STORE)/manifest.json: | $(VENV)/.core
	$(VENV)/bin/gpu-features precompute --output $(STORE)

train: $(VENV)/.torch $(STORE)/manifest.json
	$(PY) -m train --store $(STORE) --run-dir $(RUN) --overwrite

verify: $(VENV)/.core $(STORE)/manifest.json
	$(VENV)/bin/gpu-features verify $(STORE)

inspect: $(VENV)/.core $(STORE)/manifest.json
	$(VENV)/bin/gpu-features inspect $(STORE)

test: $(VENV)/.dev
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

bench: $(VENV)/.torch
	$(PY) bench/features.py --repeat 15 --out $(BENCH_OUT)/features-cpu.json
	$(PY) bench/train.py --out $(BENCH_OUT)/train-cpu.json

# GPU machine: no network, so no venv and no installs; run from the working tree.
test-gpu:
	@$(PYTHON) -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" 2>/dev/null \
	  || { echo "✗ no CUDA device or CuPy here: make test-gpu needs a GPU machine (nothing run)"; exit 2; }
	@mkdir -p $(BENCH_OUT); status=0; \
	PYTHONPATH=. $(PYTHON) -m pytest -q -p no:cacheprovider -m gpu tests || status=1; \
	PYTHONPATH=. $(PYTHON) bench/features.py --out $(BENCH_OUT)/features-gpu.json || status=1; \
	PYTHONPATH=. $(PYTHON) bench/train.py --out $(BENCH_OUT)/train-gpu.json || status=1; \
	PYTHONPATH=. $(PYTHON) bench/summary.py $(BENCH_OUT)/features-gpu.json $(BENCH_OUT)/train-gpu.json || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) data runs build dist *.egg-info .pytest_cache $(BENCH_OUT)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
