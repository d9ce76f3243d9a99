#!/bin/sh
# Default-configuration sweep (docs/QUALITY.md): prescore-kmeans, m = 4096, at the
# library's b = s = 256, r = 7; clusters x global keys; 3 method seeds.
B=${1:-build}/bench/prescore-bench
for cfg in "256 0" "256 64" "16 0" "16 64"; do
  set -- $cfg
  for src in "--data data/minilm-l6-valgrind-core-16384.psqkv --layer 0 --head 0" \
             "--data data/minilm-l6-valgrind-core-16384.psqkv --layer 2 --head 0" \
             "--data data/minilm-l6-valgrind-core-16384.psqkv --layer 5 --head 0" \
             "--workload heavy --n 16384" "--workload gaussian --n 16384"; do
    for seed in 1 2 3; do
      echo "{\"clusters\": $1, \"global\": $2, \"src\": \"$src\", \"r\": $($B $src --method prescore-kmeans --clusters $1 --global $2 --budget 4096 --seed $seed --check --json 2>/dev/null | head -1)}"
    done
  done
done
