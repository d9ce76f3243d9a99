#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md "Storage types and layouts": fp16 against
# fp32 storage and [B, T, H, D] against [B, H, T, D], the pairs alternated so
# that both see the same machine load. JSON lines on stdout.
# Usage: bench/tensors.sh [BUILD_DIR] > tensors.jsonl
set -euo pipefail
bench=${1:-build}/bench/prescore-bench
run() { echo "+ prescore-bench $*" >&2; "$bench" --json "$@"; }

# Exact attention: fp16 error against fp32 exact on the same rounded inputs,
# speed and device bytes of each storage type.
for round in 1 2; do
    for dt in f32 f16kv f16; do
        run --method exact --n 16384 --dtype "$dt" --check --repeat 3
    done
done

# Approximate methods: error of fp16 storage against fp32 over 60 method
# seeds on the heavy workload (the seed spread is the yardstick).
for m in hyper prescore; do
    for dt in f32 f16; do
        for seed in $(seq 1 60); do
            run --method "$m" --n 16384 --workload heavy --dtype "$dt" --seed "$seed" \
                --check --repeat 1
        done
    done
done

# Prescore at n = 131072: speed and device bytes.
for round in 1 2 3; do
    for dt in f32 f16 f16kv; do
        run --method prescore --n 131072 --dtype "$dt" --repeat 5
    done
done

# Layouts: 8 heads, n = 16384, exact and prescore.
for m in exact prescore; do
    for l in bhtd bthd bhtd bthd; do
        run --method "$m" --n 16384 --heads 8 --layout "$l" --repeat 3
    done
done

# A variable-length batch.
run --method prescore --varlen 16384,4096,1024,300 --check --repeat 3
