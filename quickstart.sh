#!/usr/bin/env bash
# Quick start on Debian/Ubuntu: installs the packages the build needs (when
# missing), configures and builds with Meson, then runs either the benchmark
# on the default device or the test suites.
#
#   ./quickstart.sh bench [prescore-bench options...]
#       (no options: the built-in workload table, bench/README.md)
#   ./quickstart.sh test  [meson test options...]
#
# PRESCORE_BUILD_DIR chooses the build directory (default: build).
set -euo pipefail
cd "$(dirname "$0")"

what=${1:-}
case "$what" in
bench | test) shift ;;
*)
    echo "usage: $0 bench|test [options...]" >&2
    exit 2
    ;;
esac

packages="gcc libc6-dev pkg-config python3 meson ninja-build ocl-icd-opencl-dev
opencl-headers pocl-opencl-icd libclblast-dev libcmocka-dev clinfo"
missing=()
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "missing packages (${missing[*]}) and no apt-get: install them by hand" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

build=${PRESCORE_BUILD_DIR:-build}
[ -f "$build/build.ninja" ] || meson setup "$build"
meson compile -C "$build"

if [ "$what" = bench ]; then
    exec "$build/bench/prescore-bench" "$@"
fi
set +e
meson test -C "$build" --print-errorlogs "$@"
rc=$?
python3 tools/test_summary.py "$build"
exit $rc
