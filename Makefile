# gpu-features. On a fresh checkout `make precompute`, `make train` and `make test`
# work by themselves: each creates .venv that sees the packages of $(PYTHON), even when
# $(PYTHON) is itself a venv or conda env (a GPU pod's own torch and CuPy are used), and
# installs only what is missing (nothing at all, and no network, when everything is there).
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

.DEFAULT_GOAL := help
.PHONY: help precompute train test test-gpu verify inspect bench clean FORCE

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

# .venv sees what $(PYTHON) sees. --system-site-packages shows only the packages of the base
# installation (a conda env is one, so it is covered); when $(PYTHON) is a venv, as on a GPU
# pod, PARENT_SITE writes a .pth into .venv that adds $(PYTHON)'s own site-packages the way
# $(PYTHON) adds them (their .pth files included). .venv has no pip or setuptools of its own
# when $(PYTHON)'s are visible, so an older bundled copy never hides newer ones.
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
# setuptools >= 68 for the editable install, and bdist_wheel (in setuptools since 70.1, else wheel).
define SETUPTOOLS_OK
import importlib.util, setuptools, sys
v = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
sys.exit(v < (68, 0) or (v < (70, 1) and importlib.util.find_spec("wheel") is None))
endef
# .venv must run this checkout, not a gpu-features installed in $(PYTHON).
define OWN_CHECKOUT
import importlib.util, os, sys
origin = os.path.realpath(importlib.util.find_spec("gpu_features").origin)
if not origin.startswith(os.path.realpath(sys.argv[1]) + os.sep):
    sys.exit(f"error: .venv imports gpu_features from {origin}, not from this checkout; "
             "uninstall gpu-features from PYTHON or call make with another PYTHON.")
endef
export PARENT_SITE MISSING SETUPTOOLS_OK OWN_CHECKOUT
NO_SETUPTOOLS = error: the editable install needs setuptools >= 68 (with wheel below 70.1); offline, install it into $(PYTHON), or remove a .venv made by an older Makefile, whose own setuptools hides $(PYTHON)'s (make clean).
install_missing = missing=$$($(PY) -c "$$MISSING" $(1)) && { test -z "$$missing" || $(PIP) $$missing; }

# Runs on every make (two interpreter starts, ~50 ms); rewrites .parent, and so re-runs the
# checks of .core, only when what it lists changes: a new PYTHON, or a .venv from an older Makefile.
$(VENV)/.parent: FORCE
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages --without-pip $(VENV)
	@$(PYTHON) -c "$$PARENT_SITE" > $@.new && { cmp -s $@.new $@ && rm $@.new || mv $@.new $@; }
	@pth="$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/gpu-features-parent.pth"; \
	  cmp -s $@ "$$pth" || cp $@ "$$pth"

FORCE:

$(VENV)/.core: pyproject.toml $(VENV)/.parent
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip -q
	@$(call install_missing,numpy pyarrow safetensors rich filelock)
	@$(PY) -c "$$SETUPTOOLS_OK" 2>/dev/null || $(PIP) "setuptools>=70.1" || { echo "$(NO_SETUPTOOLS)"; exit 1; }
	@$(PIP) --no-deps --no-build-isolation -e .
	@$(PY) -I -c "$$OWN_CHECKOUT" "$(CURDIR)"
	@touch $@

$(VENV)/.torch: $(VENV)/.core
	@$(call install_missing,torch=$(TORCH))
	@touch $@

$(VENV)/.dev: $(VENV)/.torch
	@$(call install_missing,pytest matplotlib importlinter=import-linter==2.17 distributed=$(DASK) $(INGEST_DEV) optuna=optuna==5.1.0)
	@$(PY) -c "import wheel" 2>/dev/null || $(PIP) wheel \
	  || echo "note: wheel not installed; the test that builds a wheel will skip"
	@$(PY) -m pip show -q nvidia-cuda-nvrtc >/dev/null 2>&1 || $(PIP) $(NVRTC) \
	  || echo "note: $(NVRTC) not installed; the NVRTC compile check will skip"
	@touch $@

# --- main jobs ---------------------------------------------------------------------------

precompute: $(VENV)/.core
	$(VENV)/bin/gpu-features precompute --output $(STORE) --overwrite $(PRECOMPUTE_ARGS)

$(STORE)/manifest.json: | $(VENV)/.core
	$(VENV)/bin/gpu-features precompute --output $(STORE) $(PRECOMPUTE_ARGS)

train: $(VENV)/.torch $(STORE)/manifest.json
	$(PY) -m train --store $(STORE) --run-dir $(RUN) --overwrite

verify: $(VENV)/.core $(STORE)/manifest.json
	$(VENV)/bin/gpu-features verify $(STORE)

inspect: $(VENV)/.core $(STORE)/manifest.json
	$(VENV)/bin/gpu-features inspect $(STORE)

# import-linter may come from $(PYTHON) (a pod), whose console scripts are not in .venv/bin.
test: $(VENV)/.dev
	$(PY) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
	$(PY) -m pytest -q

bench: $(VENV)/.torch
	$(PY) bench/features.py --repeat 15 --out $(BENCH_OUT)/features-cpu.json
	$(PY) bench/train.py --world-size 2 --out $(BENCH_OUT)/train-cpu.json

# GPU machine: no network, so no venv and no installs; run from the working tree. Each stage
# (doctor, GPU tests, both benchmarks) is time-boxed and logged under $(BENCH_OUT); table last.
test-gpu:
	@$(PYTHON) -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" 2>/dev/null \
	  || { echo "✗ no CUDA device or CuPy here: make test-gpu needs a GPU machine (nothing run)"; exit 2; }
	PYTHON=$(PYTHON) bash bench/test_gpu.sh $(BENCH_OUT)

clean:
	rm -rf $(VENV) data runs build dist *.egg-info .pytest_cache $(BENCH_OUT)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
