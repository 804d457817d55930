#!/usr/bin/env bash
# `make test-gpu`: on a CUDA machine with no network, run the doctor, every GPU test and both
# benchmarks from the working tree (no venv, no installs), each stage time-boxed and logged under
# OUT, then print one short table: the stages with their exit codes and times, then the bench rows.
# Usage: bench/test_gpu.sh OUT   (PYTHON=python3 by default; a stage's limit from LIMIT_<STAGE>)
set -u
PY=${PYTHON:-python3}
OUT=${1:-bench/results}
mkdir -p "$OUT"
: > "$OUT/stages.jsonl"
export PYTHONPATH=.
status=0

stage() {  # stage NAME LIMIT_SECONDS COMMAND...: output to the terminal and to OUT/NAME.log
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "=== $name (at most ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    printf '{"stage": "%s", "rc": %d, "seconds": %d, "limit": %d}\n' "$name" "$rc" $(( $(date +%s) - start )) \
        "$limit" >> "$OUT/stages.jsonl"
    [ "$rc" = 0 ] || status=1
}

stage doctor "${LIMIT_DOCTOR:-60}" "$PY" -c "import sys; from gpu_features.cli import main; sys.exit(main(['doctor']))"
stage pytest-gpu "${LIMIT_PYTEST:-300}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests
stage bench-features "${LIMIT_FEATURES:-240}" "$PY" bench/features.py --out "$OUT/features-gpu.json"
stage bench-train "${LIMIT_TRAIN:-180}" "$PY" bench/train.py --out "$OUT/train-gpu.json"
"$PY" bench/summary.py --stages "$OUT/stages.jsonl" --pytest-log "$OUT/pytest-gpu.log" \
    "$OUT/features-gpu.json" "$OUT/train-gpu.json" || status=1
exit $status
