# gpu-features. On a fresh checkout `make precompute`, `make train` and `make test`
# work by themselves: each creates .venv that sees the packages of $(PYTHON), even when
# $(PYTHON) is itself a venv or conda env (a GPU pod's own torch and CuPy are used), and
# installs only what is missing (nothing at all, and no network, when everything is there).
# The checkout itself is put on .venv's path by a .pth, so the main jobs need no pip, no
# setuptools and no build step: the commands run as `python -m gpu_features` / `python -m train`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
STORE ?= data/features/demo
RUN ?= runs/demo
# CI and laptops get the CPU build from local disk; a machine that already has torch keeps it.
TORCH ?= torch==2.13.0
# Dask for the distributed precompute (extra 'distributed'); CI runs its tests on a local cluster.
DASK ?= dask[distributed]==2026.8.0
# NVRTC alone (no GPU needed) lets the tests compile the GPU program exactly as CuPy does.
NVRTC ?= nvidia-cuda-nvrtc==13.0.88
# Ingest tests read real DBN files and pandas DataFrames (polars, 170 MB, is tested only where installed).
INGEST_DEV ?= databento_dbn=databento-dbn==0.72.0 pandas=pandas==3.1.1
BENCH_OUT ?= bench/results
# Extra flags for `make precompute`, e.g. PRECOMPUTE_ARGS="--synthetic-bars 5000 --quiet".
PRECOMPUTE_ARGS ?=
# Extra flags for `make train`, e.g. TRAIN_ARGS="--epochs 1 --quiet".
TRAIN_ARGS ?=
# Extra flags for `make probe`, e.g. PROBE_ARGS="--finetune".
PROBE_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help precompute train probe test test-gpu verify inspect bench clean FORCE

help:
	@echo "make precompute   compute the demo store ($(STORE)) from the embedded synthetic bars"
	@echo "make train        pretrain Jade on the demo store (builds it first if missing) -> $(RUN)"
	@echo "make probe        measure the trained demo run downstream (sign and volatility) -> $(RUN)/probe.json"
	@echo "make test         run the test suite (CPU; GPU tests skip with their reason)"
	@echo "make test-gpu     GPU tests + benchmarks on a CUDA machine, no installs, table last"
	@echo "make verify       recompute sampled bars of the demo store and compare bits"
	@echo "make inspect      statistics, swing rates and warnings of the demo store"
	@echo "make bench        CPU benchmarks (bench/features.py, bench/precompute.py, bench/train.py)"
	@echo "make clean        remove .venv, data/, runs/, caches and build output"

# --- environments ------------------------------------------------------------------------

# .venv sees what $(PYTHON) sees. --system-site-packages shows only the packages of the base
# installation (a conda env is one, so it is covered); when $(PYTHON) is a venv, as on a GPU
# pod, PARENT_SITE writes a .pth into .venv that adds $(PYTHON)'s own site-packages the way
# $(PYTHON) adds them (their .pth files included). .venv has no pip or setuptools of its own
# when $(PYTHON)'s are visible, so an older bundled copy never hides newer ones. The same rule
# writes gpu-features-checkout.pth, which puts this checkout on .venv's path: no editable
# install, so no build backend (setuptools) and no pip are needed for the main jobs.
define PARENT_SITE
import os, site, sys
prefix = os.path.realpath(sys.prefix)
base = os.path.realpath(getattr(sys, "real_prefix", sys.base_prefix))
print(chr(35), "gpu-features: the packages of", sys.executable, "(written by make, see README: Set up)")
for d in site.getsitepackages() if prefix != base else []:
    if os.path.isdir(d) and os.path.realpath(d).startswith(prefix + os.sep):
        print("import site; site.addsitedir(%r)" % d)
endef
# Prints the pip specs of the given modules (`module` or `module=spec`) that do not import.
define MISSING
import importlib, sys
missing = []
for arg in sys.argv[1:]:
    module, _, spec = arg.partition("=")
    try:
        importlib.import_module(module)
    except Exception:
        missing.append(spec or module)
print(" ".join(missing))
endef
# What the test that builds a wheel needs: setuptools >= 68 (pyproject.toml) and the wheel package, looked
# up without importing setuptools (which puts its own vendored copy of wheel on the path).
define WHEEL_BUILD_OK
import importlib.metadata, importlib.util, sys
version = tuple(int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
sys.exit(version < (68, 0) or importlib.util.find_spec("wheel") is None)
endef
# .venv must run this checkout, not a gpu-features installed in $(PYTHON).
define OWN_CHECKOUT
import importlib.util, os, sys
origin = os.path.realpath(importlib.util.find_spec("gpu_features").origin)
if not origin.startswith(os.path.realpath(sys.argv[1]) + os.sep):
    sys.exit(f"error: .venv imports gpu_features from {origin}, not from this checkout; "
             "uninstall gpu-features from PYTHON or call make with another PYTHON.")
endef
export PARENT_SITE MISSING WHEEL_BUILD_OK OWN_CHECKOUT
# pip only when something is missing: .venv's own, else $(PYTHON)'s, else ensurepip's (stdlib).
HAVE_PIP = { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip -q >/dev/null 2>&1; }
# Installs the pip specs of the given modules that do not import; if that is impossible (no pip, no
# index), says which are missing and how to provide them, and stops.
install_missing = missing=$$($(PY) -c "$$MISSING" $(1)) && { test -z "$$missing" || { $(HAVE_PIP) && $(PIP) $$missing; } \
  || { echo "error: $(2) needs $$missing, which $(PYTHON) lacks, and they could not be installed into $(VENV) (no pip, or no package index: see above); install them into $(PYTHON) (offline: pip install --no-index --find-links DIR), or run make where PyPI is reachable."; exit 1; }; }

# Runs on every make (two interpreter starts, ~50 ms); rewrites .parent, and so re-runs the
# checks of .core, only when what it lists changes: a new PYTHON, or a .venv from an older Makefile.
$(VENV)/.parent: FORCE
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages --without-pip $(VENV)
	@$(PYTHON) -c "$$PARENT_SITE" > $@.new && { cmp -s $@.new $@ && rm $@.new || mv $@.new $@; }
	@site="$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
	  cmp -s $@ "$$site/gpu-features-parent.pth" || cp $@ "$$site/gpu-features-parent.pth"; \
	  printf '%s\n' "$(CURDIR)" > "$$site/gpu-features-checkout.pth.new" && \
	  { cmp -s "$$site/gpu-features-checkout.pth.new" "$$site/gpu-features-checkout.pth" \
	    && rm "$$site/gpu-features-checkout.pth.new" \
	    || mv "$$site/gpu-features-checkout.pth.new" "$$site/gpu-features-checkout.pth"; }

FORCE:

# The runtime packages; the checkout comes through gpu-features-checkout.pth (see .parent), and
# .venv/bin/gpu-features is `python -m gpu_features` (no console script from an install).
$(VENV)/.core: pyproject.toml $(VENV)/.parent
	@$(call install_missing,numpy pyarrow safetensors rich filelock,gpu-features)
	@$(PY) -I -c "$$OWN_CHECKOUT" "$(CURDIR)"
	@printf '#!/bin/sh\nexec "%s" -m gpu_features "$$@"\n' "$(abspath $(PY))" > $(VENV)/bin/gpu-features
	@chmod +x $(VENV)/bin/gpu-features
	@touch $@

$(VENV)/.torch: $(VENV)/.core
	@$(call install_missing,torch=$(TORCH),make train)
	@touch $@

$(VENV)/.dev: $(VENV)/.torch
	@$(call install_missing,pytest matplotlib importlinter=import-linter==2.17 distributed=$(DASK) $(INGEST_DEV) optuna=optuna==5.1.0 sklearn=scikit-learn==1.7.2,make test)
	@$(PY) -c "$$WHEEL_BUILD_OK" 2>/dev/null || $(PIP) "setuptools>=70.1" wheel 2>/dev/null \
	  || echo "note: setuptools>=68 and wheel not installed; the test that builds a wheel will skip"
	@$(PY) -m pip show -q nvidia-cuda-nvrtc >/dev/null 2>&1 || $(PIP) $(NVRTC) \
	  || echo "note: $(NVRTC) not installed; the NVRTC compile check will skip"
	@touch $@

# --- main jobs ---------------------------------------------------------------------------

precompute: $(VENV)/.core
	$(PY) -m gpu_features precompute --output $(STORE) --overwrite $(PRECOMPUTE_ARGS)

$(STORE)/manifest.json: | $(VENV)/.core
	$(PY) -m gpu_features precompute --output $(STORE) $(PRECOMPUTE_ARGS)

train: $(VENV)/.torch $(STORE)/manifest.json
	$(PY) -m train --store $(STORE) --run-dir $(RUN) --overwrite $(TRAIN_ARGS)

# The trained demo run used downstream (README: Using the encoder); `make train` first.
probe: $(VENV)/.torch
	$(PY) -m train probe --run $(RUN) --target return-sign:5 --target realized-vol:5 $(PROBE_ARGS)

verify: $(VENV)/.core $(STORE)/manifest.json
	$(PY) -m gpu_features verify $(STORE)

inspect: $(VENV)/.core $(STORE)/manifest.json
	$(PY) -m gpu_features inspect $(STORE)

# import-linter may come from $(PYTHON) (a pod), whose console scripts are not in .venv/bin.
test: $(VENV)/.dev
	$(PY) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
	$(PY) -m pytest -q

bench: $(VENV)/.torch
	$(PY) bench/features.py --repeat 15 --out $(BENCH_OUT)/features-cpu.json
	$(PY) bench/precompute.py --out $(BENCH_OUT)/precompute-cpu.json
	$(PY) bench/train.py --world-size 2 --out $(BENCH_OUT)/train-cpu.json

# GPU machine: no network, so no venv and no installs; run from the working tree. Each stage
# (doctor, GPU tests, precompute and training benchmarks, torchrun) is time-boxed, the whole
# run stays under 5 minutes, logs go under $(BENCH_OUT); table last (bench/test_gpu.sh).
test-gpu:
	@$(PYTHON) -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" 2>/dev/null \
	  || { echo "✗ no CUDA device or CuPy here: make test-gpu needs a GPU machine (nothing run)"; exit 2; }
	PYTHON=$(PYTHON) bash bench/test_gpu.sh $(BENCH_OUT)

clean:
	rm -rf $(VENV) data runs build dist *.egg-info .pytest_cache $(BENCH_OUT)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
