#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md "Storage types and layouts": fp16 against
# fp32 storage and [B, T, H, D] against [B, H, T, D], each pair run back to
# back so that both see the same machine load. JSON lines on stdout.
# Usage: bench/tensors.sh [BUILD_DIR] > tensors.jsonl
set -euo pipefail
bench=${1:-build}/bench/prescore-bench
run() { echo "+ prescore-bench $*" >&2; "$bench" --json "$@"; }

# Errors: fp16 (and fp16 K/V) against fp32 exact on the same rounded inputs.
for dt in f32 f16 f16kv; do
    run --method exact --n 16384 --dtype "$dt" --check --repeat 3
done
for m in hyper prescore; do
    for dt in f32 f16; do
        run --method "$m" --n 16384 --dtype "$dt" --check --repeat 1
        run --method "$m" --n 16384 --dtype "$dt" --workload heavy --check --repeat 1
    done
done

# Speed and device bytes: prescore at n = 131072, fp32 then fp16 (and back,
# to see the drift of the machine between the two).
for dt in f32 f16 f16kv f32; do
    run --method prescore --n 131072 --dtype "$dt" --repeat 3
done

# Layouts: 8 heads, n = 16384, exact and prescore.
for m in exact prescore; do
    for l in bhtd bthd bhtd bthd; do
        run --method "$m" --n 16384 --heads 8 --layout "$l" --repeat 3
    done
done

# A variable-length batch against its longest sequence alone.
run --method prescore --varlen 16384,4096,1024,300 --check --repeat 3
run --method prescore --n 16384 --check --repeat 3
