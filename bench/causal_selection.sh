#!/usr/bin/env bash
# Causal prescore on the 16384-token MiniLM file (layers 0, 2, 5, head 0,
# m = 4096, default b = s = 256, g = 64): top-m, the stratified draw without
# a sketch, and the default (stratified + a 32-row sketch in every recursion
# node); docs/QUALITY.md "Causal plans".
#   bench/causal_selection.sh [BUILD_DIR] > docs/data/causal_selection.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build}/bench/prescore-bench
for layer in 0 2 5; do
    for sel in "top 0" "stratified 0" "auto 32"; do
        set -- $sel
        echo "+ layer $layer: --selection $1 --sketch $2" >&2
        "$bench" --json --check --repeat 1 --causal --method prescore \
            --data data/minilm-l6-valgrind-core-16384.psqkv --layer "$layer" --budget 4096 \
            --selection "$1" --sketch "$2"
    done
done
