#!/usr/bin/env bash
# `make test-gpu`: on a CUDA machine with no network, prove the GPU paths and measure what issue 19's table
# asks, from the working tree (no venv, no installs), in under 5 minutes. Every stage is time-boxed by its
# limit and by what is left of BUDGET seconds (the whole run), and logged under OUT; then one table: the
# stages with their exit codes and times, and every bench row.
#
#   stage             what                                                                  limit (s)
#   doctor            what the environment sees: CuPy, torch, devices, engines                     20
#   pytest-gpu        every test marked gpu                                                       105
#   bench-precompute  gpu engine, 1.8M bars: kernel time, engine call, in-process precompute,
#                     CLI parquet -> store (bench/precompute.py, each validated first)              40
#   bench-train       loader vs seed-style DataLoader at B=256; training windows/s at B=256 and
#                     4096 in fp32 and bf16; eager vs CUDA-graph step and whether the weights
#                     end bit-equal (bench/train.py --quick)                                       70
#   torchrun          python -m train under torchrun --nproc_per_node=1 (bench/train.py --torchrun) 35
#
# The limits add up to BUDGET (270 s by default); a killed stage gets 3 s more to go, so even a run
# in which every stage times out ends within 290 s, table included.
#
# Usage: bench/test_gpu.sh OUT [--cpu]   PYTHON (python3), BUDGET and LIMIT_<STAGE> (e.g. LIMIT_PYTEST=150)
# override. --cpu runs the same stages on this machine's CPU (host engine, --device cpu, small sizes) to
# check the script itself where there is no GPU: the GPU tests then skip with their reasons, the
# CUDA-graph comparison says it was skipped, and the figures are no GPU figures; a CPU trains slowly, so
# there every limit and the budget are four times the GPU ones.
set -u
PY=${PYTHON:-python3}
OUT=${1:-bench/results}
MODE=${2:-gpu}
scale=1
[ "$MODE" = "--cpu" ] && scale=4
BUDGET=${BUDGET:-$(( 270 * scale ))}
mkdir -p "$OUT"
: > "$OUT/stages.jsonl"
export PYTHONPATH=.
status=0
t_start=$(date +%s)

stage() {  # stage NAME LIMIT_SECONDS COMMAND...: output to the terminal and to OUT/NAME.log
    local name=$1 limit=$2 start rc left
    shift 2
    left=$(( BUDGET - ($(date +%s) - t_start) ))
    [ "$left" -lt "$limit" ] && limit=$left
    start=$(date +%s)
    if [ "$limit" -lt 5 ]; then
        echo "=== $name: not run, the ${BUDGET} s budget is spent" | tee "$OUT/$name.log"
        rc=125
    else
        echo "=== $name (at most ${limit} s): $*"
        timeout --kill-after=3 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
        rc=${PIPESTATUS[0]}
    fi
    printf '{"stage": "%s", "rc": %d, "seconds": %d, "limit": %d}\n' "$name" "$rc" $(( $(date +%s) - start )) \
        "$limit" >> "$OUT/stages.jsonl"
    [ "$rc" = 0 ] || status=1
}

if [ "$MODE" = "--cpu" ]; then
    tag=cpu
    precompute_args=(--engine host --bars 200000 --repeat 3 --rss-bars 0)
    train_args=(--quick --device cpu)
    torchrun_args=(--torchrun --device cpu --torchrun-windows 256)
else
    tag=gpu
    precompute_args=(--engine gpu --repeat 5 --rss-bars 0)
    train_args=(--quick --device cuda)
    torchrun_args=(--torchrun --device cuda)
fi

stage doctor "${LIMIT_DOCTOR:-$(( 20 * scale ))}" "$PY" -c "import sys; from gpu_features.cli import main; sys.exit(main(['doctor']))"
stage pytest-gpu "${LIMIT_PYTEST:-$(( 105 * scale ))}" "$PY" -m pytest -q -p no:cacheprovider -m gpu --durations=10 tests
stage bench-precompute "${LIMIT_PRECOMPUTE:-$(( 40 * scale ))}" "$PY" bench/precompute.py "${precompute_args[@]}" \
    --out "$OUT/precompute-$tag.json"
stage bench-train "${LIMIT_TRAIN:-$(( 70 * scale ))}" "$PY" bench/train.py "${train_args[@]}" --out "$OUT/train-$tag.json"
stage torchrun "${LIMIT_TORCHRUN:-$(( 35 * scale ))}" "$PY" bench/train.py "${torchrun_args[@]}" --out "$OUT/torchrun-$tag.json"
"$PY" bench/summary.py --stages "$OUT/stages.jsonl" --pytest-log "$OUT/pytest-gpu.log" \
    "$OUT/precompute-$tag.json" "$OUT/train-$tag.json" "$OUT/torchrun-$tag.json" || status=1
echo "make test-gpu: $(( $(date +%s) - t_start )) s in all (budget ${BUDGET} s); logs and JSON in $OUT"
exit $status
