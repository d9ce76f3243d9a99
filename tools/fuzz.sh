#!/usr/bin/env bash
# Runs the libFuzzer target tests/fuzz/fuzz_desc (descriptor validation and
# the host reference) for a bounded time and reports.
#   tools/fuzz.sh [seconds=60] [build-dir=/tmp/build-fuzz] [extra libFuzzer flags...]
# Configures a clang build with -Dfuzz=true and ASan+UBSan (the library too,
# with coverage instrumentation), fuzzes from the seed corpus
# tests/fuzz/corpus/ into a scratch copy of it, and leaves crash inputs in
# <build-dir>/fuzz-artifacts/. Exit status: 0 when no crash was found.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${2:-/tmp/build-fuzz}
shift $(( $# < 2 ? $# : 2 ))

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dbench=false -Db_lundef=false \
        -Db_sanitize=address,undefined -Dbuildtype=debugoptimized \
        -Dc_args=-fsanitize=fuzzer-no-link
fi
ninja -C "$build" tests/fuzz/fuzz_desc

work="$build/fuzz-corpus"        # grows with what the fuzzer finds
artifacts="$build/fuzz-artifacts"
mkdir -p "$work" "$artifacts"
cp -n tests/fuzz/corpus/* "$work"/ 2>/dev/null || true

echo "fuzzing for ${seconds}s (corpus $work, crashes to $artifacts/)"
set +e
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$build/tests/fuzz/fuzz_desc" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$@" "$work" tests/fuzz/regressions 2>&1 |
    tee "$build/fuzz.log" | grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|SUMMARY|Test unit written|stat::" 
rc=${PIPESTATUS[0]}
set -e
echo "corpus: $(ls "$work" | wc -l) inputs; crashes: $(ls "$artifacts" | wc -l); full log $build/fuzz.log"
if [ "$rc" -ne 0 ]; then
    echo "fuzz_desc found a problem (exit $rc); replay it with: $build/tests/fuzz/fuzz_desc <file>"
fi
exit "$rc"
