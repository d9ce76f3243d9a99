#!/usr/bin/env bash
# Reproduces the measurements of docs/PERFORMANCE.md: runs prescore-bench for
# every row of its tables and writes JSON lines to stdout (progress on
# stderr). Usage: bench/performance.sh [BUILD_DIR] > results.jsonl
set -euo pipefail
bench=${1:-build}/bench/prescore-bench
run() { echo "+ prescore-bench $*" >&2; "$bench" --json "$@"; }

# Exact attention against the device's FMA peak and CLBlast's SGEMM (issue 2).
run --method exact --n 8192 --d 64 --peak --gemm-roof
run --method exact --n 8192 --d 64 --causal
run --method exact --n 4096,16384 --d 64 --repeat 3
run --method exact --n 8192 --d 128 --repeat 3

# Scoring and selection alone (issue 3), against exact at n = 16384 (the
# table extrapolates exact to 131072 by n^2).
run --method score-kmeans --n 131072 --d 64 --budget 4096 --repeat 3
run --method score-leverage --n 131072 --d 64 --budget 4096 --repeat 3
run --method score-norm --n 131072 --d 64 --budget 4096 --repeat 3

# HyperAttention and the pre-scored pipeline (issues 4 and 5), non-causal.
run --method hyper --n 32768,65536 --d 64 --repeat 3
run --method exact --n 32768 --d 64 --repeat 1
run --method prescore --n 32768,131072 --d 64 --budget 4096 --repeat 3
run --method prescore-leverage --n 32768,131072 --d 64 --budget 4096 --repeat 3
run --method prescore-norm --n 32768,131072 --d 64 --budget 4096 --repeat 3
