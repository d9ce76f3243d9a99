#!/usr/bin/env bash
# Quality and speed figures of docs/ (bench/README.md, "Scripts"): the
# built-in workload table as JSON, a budget sweep on the heavy workload
# (n = 16384, m = 512..8192, the prescore-* methods at the default prescore
# plan's block/samples/global keys/LSH bits, hyper as the reference line,
# 3 method seeds), and the figures made from them.
#   bench/quality.sh [BUILD_DIR]      (default: build)
# Writes docs/data/table.jsonl, docs/data/budget_sweep.jsonl,
# docs/data/conditions.txt and docs/figures/{time_vs_n,error_vs_budget}.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build}/bench/prescore-bench
data=docs/data
figures=docs/figures
mkdir -p "$data" "$figures"
[ -x "$bench" ] || { echo "no $bench: build first (meson setup build && ninja -C build)" >&2; exit 1; }

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "device: $("$bench" --list-devices | head -n 1)"
    echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    echo "command: bench/quality.sh ${1:-build} (table: prescore-bench --json; then the sweep)"
    echo "machine: $(nproc) cores; shared with other work, so timings are noisy"
} > "$data/conditions.txt"

echo "+ prescore-bench --json (the built-in table)" >&2
"$bench" --json > "$data/table.jsonl.tmp"
mv "$data/table.jsonl.tmp" "$data/table.jsonl"

sweep() { "$bench" --json --check --repeat 1 --workload heavy --n 16384 --equal-budget "$@"; }
: > "$data/budget_sweep.jsonl.tmp"
for seed in 42 43 44; do
    echo "+ sweep seed $seed: hyper" >&2
    sweep --method hyper --seed "$seed" >> "$data/budget_sweep.jsonl.tmp"
    for method in prescore-kmeans prescore-leverage prescore-norm; do
        for m in 512 1024 2048 4096 8192; do
            echo "+ sweep seed $seed: $method m=$m" >&2
            sweep --method "$method" --budget "$m" --seed "$seed" \
                >> "$data/budget_sweep.jsonl.tmp"
        done
    done
done
mv "$data/budget_sweep.jsonl.tmp" "$data/budget_sweep.jsonl"
{
    echo "finished: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
} >> "$data/conditions.txt"

python3 bench/plot.py --table "$data/table.jsonl" --sweep "$data/budget_sweep.jsonl" \
    --out "$figures"
