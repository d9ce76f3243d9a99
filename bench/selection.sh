#!/usr/bin/env bash
# Reproduces docs/QUALITY.md "Weighted selection": top-m against the weighted
# selection (PS_SELECTION_WEIGHTED) on the recorded MiniLM data, each row with
# its floor and the oracle and random floors for as many keys. JSON lines on
# stdout (one per layer: every stored head of the layer in one row).
#  - data/minilm-l6-valgrind-core-16384.psqkv, layers 0, 2, 5, m = n/4 = 4096,
#    the default b = s = 256, g = 0 and 64;
#  - data/minilm-l6-gpl-3-512.psqkv, all 6 layers x 12 heads, m = n/4 and n/8,
#    b = s = 128 (approximate path forced: --min-seq-len 64), g = 0 and 8;
#    no query sketch (--sketch 0: the library's automatic one is the default);
#  - then the weighted selection with its heavy and global keys ranked by a
#    query sketch (--sketch): the long file at s = 32 and 128 sampled query
#    rows, g = 64; the 512 file at s = 32, g = 8 and the automatic m/8;
#  - then the stratified selection (--selection stratified), with and without
#    a 32-row sketch, the long file at g = 64, the 512 file at g = m/8;
#  - last the synthetic workloads (heavy, clusters, gaussian) at n = 16384,
#    8 heads, d = 64, the bench's default m = 4096: top-m, stratified with
#    and without the sketch, weighted with it, and hyper at the same b, s, g.
# Usage: bench/selection.sh [BUILD_DIR] > selection.jsonl
set -euo pipefail
bench=${1:-build}/bench/prescore-bench
run() { echo "+ prescore-bench $*" >&2; "$bench" --json --check --repeat 1 --method prescore "$@"; }

for sel in top weighted; do
    for g in 0 64; do
        for layer in 0 2 5; do
            run --data data/minilm-l6-valgrind-core-16384.psqkv --layer "$layer" \
                --budget 4096 --global "$g" --selection "$sel" --sketch 0
        done
    done
    for m in 128 64; do
        for g in 0 8; do
            run --data data/minilm-l6-gpl-3-512.psqkv --budget "$m" --global "$g" \
                --selection "$sel" --sketch 0 --block 128 --samples 128 --min-seq-len 64
        done
    done
done
for sketch in 32 128; do
    for layer in 0 2 5; do
        run --data data/minilm-l6-valgrind-core-16384.psqkv --layer "$layer" --budget 4096 \
            --global 64 --selection weighted --sketch "$sketch"
    done
done
for mg in 128:8 128:16 64:8; do
    run --data data/minilm-l6-gpl-3-512.psqkv --budget "${mg%:*}" --global "${mg#*:}" \
        --selection weighted --sketch 32 --block 128 --samples 128 --min-seq-len 64
done
for sketch in 0 32; do
    for layer in 0 2 5; do
        run --data data/minilm-l6-valgrind-core-16384.psqkv --layer "$layer" --budget 4096 \
            --global 64 --selection stratified --sketch "$sketch"
    done
    for mg in 128:16 64:8; do
        run --data data/minilm-l6-gpl-3-512.psqkv --budget "${mg%:*}" --global "${mg#*:}" \
            --selection stratified --sketch "$sketch" --block 128 --samples 128 --min-seq-len 64
    done
done
for w in heavy clusters gaussian; do
    for sel in top:0 stratified:0 stratified:32 weighted:32; do
        run --workload "$w" --n 16384 --heads 8 --d 64 --selection "${sel%:*}" \
            --sketch "${sel#*:}"
    done
    "$bench" --json --check --repeat 1 --method hyper --equal-budget --workload "$w" \
        --n 16384 --heads 8 --d 64
done
