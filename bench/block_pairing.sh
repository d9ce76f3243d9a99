#!/usr/bin/env bash
# Reproduces docs/HYPER.md "Block pairing, measured": HyperAttention (b = 128,
# s = 128, no global keys, approximate path forced) on prefixes of the real
# MiniLM file whose lengths sit just above, at, and well above a multiple of
# b, 20 method seeds each, every stored head of layers 0, 2 and 5. Prints one
# line per (n, layer): mean rel_error and lse_error over the seeds.
# Usage: bench/block_pairing.sh [BUILD_DIR] [PYTHON]   (PYTHON needs numpy)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${1:-build}/bench/prescore-bench
python=${2:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$python" - "$root" "$tmp" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
import eval_real
src = eval_real.read_psqkv(os.path.join(sys.argv[1], "data", "minilm-l6-gpl-3-512.psqkv"))
for n in (130, 140, 181, 256, 300):
    eval_real.write_prefix(src, n, os.path.join(sys.argv[2], "p%d.psqkv" % n))
EOF

for n in 130 140 181 256 300; do
    for layer in 0 2 5; do
        for seed in $(seq 1 20); do
            "$bench" --data "$tmp/p$n.psqkv" --layer "$layer" --method hyper --block 128 \
                --samples 128 --min-seq-len 64 --global 0 --check --repeat 1 \
                --seed "$seed" --json
        done | "$python" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
rel = sum(r["rel_error"] for r in rows) / len(rows)
lse = sum(r["lse_error"] for r in rows) / len(rows)
print("n %s layer %s: rel_error %.3f lse_error %.3f (%d seeds)" % (sys.argv[1], sys.argv[2], rel, lse, len(rows)))
' "$n" "$layer"
    done
done
