#!/usr/bin/env bash
# The decode measurements (bench/README.md, "Decode"): the key cache at
# n = 131072 prefill keys, d = 64, 8 KV heads, 1 query per step, 32 steps,
# prescore (budget 4096, window 256) against exact decode on the same cache,
# with --check; an exact cache as the reference for its appends; on the
# heavy workload and on the recorded MiniLM layers of
# data/minilm-l6-valgrind-core-16384.psqkv (n = 16384 - 32: its last 32
# rows are the steps).
#   bench/decode.sh [BUILD_DIR]      (default: build)
# Writes docs/data/decode.jsonl and docs/data/decode_conditions.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build}/bench/prescore-bench
data=docs/data
mkdir -p "$data"
[ -x "$bench" ] || { echo "no $bench: build first (meson setup build && ninja -C build)" >&2; exit 1; }

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "device: $("$bench" --list-devices | head -n 1)"
    echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    echo "command: bench/decode.sh ${1:-build}"
    echo "machine: $(nproc) cores; shared with other work, so timings are noisy"
} > "$data/decode_conditions.txt"

out="$data/decode.jsonl.tmp"
: > "$out"
run() { echo "+ prescore-bench --decode $*" >&2; "$bench" --json --decode "$@" >> "$out"; }
common=(--steps 32 --decode-queries 1 --check)

run --workload heavy --n 131072 --d 64 --kv-heads 8 --budget 4096 --window 256 "${common[@]}"
run --workload heavy --n 131072 --d 64 --kv-heads 8 --method exact "${common[@]}"
run --data data/minilm-l6-valgrind-core-16384.psqkv --budget 4096 --window 256 "${common[@]}"

mv "$out" "$data/decode.jsonl"
{
    echo "finished: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
} >> "$data/decode_conditions.txt"
