#!/bin/sh
# Builds tests/consumers/consumer.c (exact attention on the default device
# against the plain-C reference) the way a C project outside this one would:
#   cmake  the built library installed into a scratch DESTDIR, a CMake project
#          with find_package(prescore-cl) and the target prescore-cl::prescore-cl;
#   meson  a Meson project holding this source tree as subprojects/prescore-cl,
#          dependency('prescore-cl') resolved by the subproject's override.
# Exit 77 (skipped): no device, or cmake not installed for the cmake way.
#   consumer_check.sh cmake|meson BUILD_DIR SOURCE_DIR
set -eu
way=${1:-}
case "$way" in
cmake | meson) ;;
*)
    echo "usage: $0 cmake|meson BUILD_DIR SOURCE_DIR" >&2
    exit 2
    ;;
esac
build=$2
src=$3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$src/tests/consumers/consumer.c" "$src/tests/consumers/$way/"* "$scratch/"

case "$way" in
cmake)
    command -v cmake >/dev/null || { echo "cmake is not installed: skipped"; exit 77; }
    meson install -C "$build" --destdir "$scratch/dest" --no-rebuild --quiet >/dev/null
    config=$(find "$scratch/dest" -name prescore-clConfig.cmake | head -n 1)
    [ -n "$config" ] || { echo "prescore-clConfig.cmake was not installed" >&2; exit 1; }
    # The package config finds its prefix from its own path, so the DESTDIR
    # copy works as an install tree of its own.
    cmake -S "$scratch" -B "$scratch/out" -Dprescore-cl_DIR="$(dirname "$config")"
    cmake --build "$scratch/out"
    # The version file: an older minor version is compatible, a newer one or
    # another major version is not (configure only).
    cmake -S "$scratch" -B "$scratch/old" -Dprescore-cl_DIR="$(dirname "$config")" \
        -DPS_WANT=0.1 >/dev/null
    for want in 0.3 1.0; do
        if cmake -S "$scratch" -B "$scratch/v$want" -Dprescore-cl_DIR="$(dirname "$config")" \
            -DPS_WANT=$want >/dev/null 2>&1; then
            echo "find_package(prescore-cl $want) accepted version 0.2" >&2
            exit 1
        fi
    done
    ;;
meson)
    mkdir "$scratch/subprojects"
    ln -s "$src" "$scratch/subprojects/prescore-cl"
    meson setup "$scratch/out" "$scratch"
    meson compile -C "$scratch/out"
    ;;
esac
"$scratch/out/consumer"
