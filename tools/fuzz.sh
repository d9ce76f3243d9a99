#!/usr/bin/env bash
# Runs a libFuzzer target for a bounded time and reports:
# tests/fuzz/fuzz_desc (descriptor validation and the host reference, the
# default), with FUZZ_TARGET=fuzz_cache tests/fuzz/fuzz_cache (the
# program cache's entry reader), with FUZZ_TARGET=fuzz_tensor_file
# tests/fuzz/fuzz_tensor_file.c (the benchmark's tensor-file readers).
#   [FUZZ_TARGET=fuzz_cache|fuzz_tensor_file] tools/fuzz.sh [seconds=60] [build-dir=/tmp/build-fuzz] [extra libFuzzer flags...]
# Configures a clang build with -Dfuzz=true and ASan+UBSan (the library too,
# with coverage instrumentation), fuzzes from the seed corpus
# tests/fuzz/corpus/ (fuzz_cache: tests/fuzz/cache_corpus/, fuzz_tensor_file:
# tests/fuzz/tensor_corpus/) into a scratch
# copy of it, and leaves crash inputs in <build-dir>/<target>-artifacts/.
# Exit status: 0 when no crash was found.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${2:-/tmp/build-fuzz}
shift $(( $# < 2 ? $# : 2 ))
target=${FUZZ_TARGET:-fuzz_desc}
case "$target" in
    fuzz_desc) seeds=tests/fuzz/corpus; regressions=tests/fuzz/regressions ;;
    fuzz_cache) seeds=tests/fuzz/cache_corpus; regressions= ;;
    fuzz_tensor_file) seeds=tests/fuzz/tensor_corpus; regressions= ;;
    *) echo "FUZZ_TARGET must be fuzz_desc, fuzz_cache or fuzz_tensor_file" >&2; exit 2 ;;
esac

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dbench=false -Db_lundef=false \
        -Db_sanitize=address,undefined -Dbuildtype=debugoptimized \
        -Dc_args=-fsanitize=fuzzer-no-link
fi
ninja -C "$build" "tests/fuzz/$target"

work="$build/$target-corpus"        # grows with what the fuzzer finds
artifacts="$build/$target-artifacts"
mkdir -p "$work" "$artifacts"
cp -n "$seeds"/* "$work"/ 2>/dev/null || true

echo "fuzzing for ${seconds}s (corpus $work, crashes to $artifacts/)"
set +e
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" "$work" $regressions 2>&1 |
    tee "$build/$target.log" | grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|SUMMARY|Test unit written|stat::" 
rc=${PIPESTATUS[0]}
set -e
echo "corpus: $(ls "$work" | wc -l) inputs; crashes: $(ls "$artifacts" | wc -l); full log $build/$target.log"
if [ "$rc" -ne 0 ]; then
    echo "$target found a problem (exit $rc); replay it with: $build/tests/fuzz/$target <file>"
fi
exit "$rc"
