#!/usr/bin/env bash
# The default prescore plan (automatic selection: stratified + 32-row query
# sketch) against HyperAttention over all keys at equal b, s and g, on the
# 512-token MiniLM file (all 6 layers x 12 heads, approximate path forced),
# m = n/4 and n/8 with g = m/8 (the automatic global keys of prescore, given
# to hyper too), b = s = 128, 64, 32; docs/QUALITY.md "Default against hyper".
#   bench/default_vs_hyper.sh [BUILD_DIR] > docs/data/default_vs_hyper.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build}/bench/prescore-bench
file=data/minilm-l6-gpl-3-512.psqkv
for bs in 128 64 32; do
    for m in 128 64; do
        g=$((m / 8))
        common=(--json --check --repeat 1 --data "$file" --global "$g" --block "$bs"
                --samples "$bs" --min-seq-len 64)
        echo "+ b = s = $bs, m = $m, g = $g" >&2
        "$bench" "${common[@]}" --method prescore --budget "$m"
        "$bench" "${common[@]}" --method hyper
    done
done
