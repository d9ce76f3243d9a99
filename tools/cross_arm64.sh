#!/usr/bin/env bash
# Cross-compiles libprescore-cl (shared + static library) and prescore-bench
# for aarch64 Linux on an x86-64 Debian 12 machine, and checks with `file`
# that what it built is aarch64 ELF. Nothing is run: the tests stay off
# (-Dtests=false), there is no emulator.
#
#   tools/cross_arm64.sh [BUILD_DIR]        (default: build-arm64)
#
# Meant for CI as root on a fresh Debian 12 (uses sudo otherwise). It installs
# what is missing: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
# opencl-headers (+ meson, ninja-build, pkgconf, python3, file when their
# commands are missing), and the arm64 OpenCL ICD loader to link against,
# from Debian multiarch: `dpkg --add-architecture arm64`, then
# ocl-icd-libopencl1:arm64 + ocl-icd-opencl-dev:arm64 (which pull
# libc6:arm64, libgcc-s1:arm64, gcc-12-base:arm64). That install is simulated
# first and only done when apt would remove nothing; otherwise (or with
# PRESCORE_CROSS_OPENCL=stub) it links against a stub libOpenCL.so.1 built
# for aarch64 from the Khronos headers in BUILD_DIR/opencl-stub (link-only:
# the binaries then need the target's real ICD loader, same soname).
#
# Environment: PRESCORE_CROSS_OPENCL=auto|multiarch|stub (default auto),
# PRESCORE_CROSS_JOBS=N (ninja -j, default ninja's own).
# Idempotent: a second run installs nothing and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
builddir=${1:-build-arm64}
mode=${PRESCORE_CROSS_OPENCL:-auto}
triplet=aarch64-linux-gnu
cross_file=cross/$triplet.ini
multiarch_pc=/usr/lib/$triplet/pkgconfig/OpenCL.pc
case "$mode" in
auto | multiarch | stub) ;;
*)
    echo "PRESCORE_CROSS_OPENCL must be auto, multiarch or stub (got '$mode')" >&2
    exit 2
    ;;
esac

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
log() { echo "cross_arm64: $*" >&2; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_updated=0
apt_update() {
    ((apt_updated)) && return 0
    $sudo apt-get update -q
    apt_updated=1
}
apt_install() { $sudo apt-get install -y -q --no-install-recommends "$@"; }

# The build machine packages the rest of CI relies on: none may disappear.
guarded="ocl-icd-opencl-dev:amd64 ocl-icd-libopencl1:amd64 pocl-opencl-icd:amd64
libclblast-dev:amd64 mesa-opencl-icd:amd64"
guarded_before=()
for p in $guarded; do
    installed "$p" && guarded_before+=("$p")
done

# 1. Toolchain and build tools.
missing=()
for p in gcc-$triplet libc6-dev-arm64-cross; do
    installed "$p" || missing+=("$p")
done
[ -f /usr/include/CL/cl.h ] || missing+=(opencl-headers)
for cp in meson:meson ninja:ninja-build pkg-config:pkgconf python3:python3 file:file; do
    command -v "${cp%%:*}" >/dev/null || missing+=("${cp#*:}")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_update
    apt_install "${missing[@]}"
fi

# 2. The aarch64 OpenCL loader to link against.
try_multiarch() {
    [ -f "$multiarch_pc" ] && installed ocl-icd-opencl-dev:arm64 && return 0
    local added=0 sim
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64"
        $sudo dpkg --add-architecture arm64
        added=1
        apt_updated=0
    fi
    if apt_update && sim=$(apt-get install -s --no-install-recommends \
        ocl-icd-libopencl1:arm64 ocl-icd-opencl-dev:arm64 2>&1) &&
        ! grep -q '^Remv ' <<<"$sim"; then
        log "installing ocl-icd-libopencl1:arm64 ocl-icd-opencl-dev:arm64"
        apt_install ocl-icd-libopencl1:arm64 ocl-icd-opencl-dev:arm64 && return 0
    else
        log "multiarch install refused (would remove packages or failed):"
        grep -E '^(Remv|E:)' <<<"${sim:-}" >&2 || true
    fi
    if ((added)) && ! dpkg-query -W -f='${Architecture}\n' 2>/dev/null | grep -qx arm64; then
        log "dpkg --remove-architecture arm64 (nothing arm64 installed)"
        $sudo dpkg --remove-architecture arm64
        $sudo apt-get update -q || true
    fi
    return 1
}

build_stub() {
    # Link-only libOpenCL.so.1: every cl* entry point of the Khronos headers,
    # as an empty function. Same soname as the real loader.
    local dir=$builddir/opencl-stub
    mkdir -p "$dir/pkgconfig"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/libOpenCL.so" ] || [ /usr/include/CL/cl.h -nt "$dir/libOpenCL.so" ]; then
        log "building the stub libOpenCL.so.1 in $dir"
        printf '#include <CL/cl.h>\n#include <CL/cl_ext.h>\n' |
            $triplet-gcc -E -DCL_TARGET_OPENCL_VERSION=300 -x c - |
            grep -oE '\bcl[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' \t(' | sort -u |
            sed 's/.*/void &(void) {}/' >"$dir/stub.c"
        $triplet-gcc -shared -fPIC -O0 -Wl,-soname,libOpenCL.so.1 \
            -o "$dir/libOpenCL.so.1" "$dir/stub.c"
        ln -sf libOpenCL.so.1 "$dir/libOpenCL.so"
    fi
    cat >"$dir/pkgconfig/OpenCL.pc" <<EOF
libdir=$dir
includedir=/usr/include

Name: OpenCL
Description: link-only aarch64 stub of the OpenCL ICD loader (tools/cross_arm64.sh)
Version: 3.0
Libs: -L\${libdir} -lOpenCL
Cflags: -I\${includedir}
EOF
    cat >"$dir/stub.ini" <<EOF
# Added after $cross_file by tools/cross_arm64.sh: the stub loader's .pc.
[properties]
pkg_config_libdir = ['$dir/pkgconfig']
EOF
    extra_cross=(--cross-file "$dir/stub.ini")
}

extra_cross=()
opencl=$mode
if [ "$mode" = auto ]; then
    if try_multiarch; then opencl=multiarch; else opencl=stub; fi
elif [ "$mode" = multiarch ]; then
    try_multiarch || {
        log "multiarch arm64 OpenCL loader unavailable"
        exit 1
    }
fi
[ "$opencl" = stub ] && build_stub

# 3. Configure (again from scratch when the OpenCL source changed) and build.
stamp=$builddir/.cross-arm64-opencl
if [ -f "$builddir/meson-private/coredata.dat" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$opencl" ]; then
    meson configure "$builddir" -Dtests=false -Dbench=true >/dev/null
else
    wipe=()
    [ -f "$builddir/meson-private/coredata.dat" ] && wipe=(--wipe)
    meson setup "${wipe[@]}" "$builddir" --cross-file "$cross_file" "${extra_cross[@]}" \
        -Dtests=false -Dbench=true
    echo "$opencl" >"$stamp"
fi
jobs=()
[ -n "${PRESCORE_CROSS_JOBS:-}" ] && jobs=(-j "$PRESCORE_CROSS_JOBS")
ninja -C "$builddir" "${jobs[@]}"  # tests are off: the libraries and the bench

# 4. Check the outputs are aarch64 ELF (the archive: every member).
fail=0
check() { # check LABEL FILE...
    local out
    out=$(file -L "${@:2}")
    echo "$out"
    if grep -v 'ELF 64-bit LSB .*ARM aarch64' <<<"$out" | grep -q .; then
        log "not aarch64 ELF: $1"
        fail=1
    fi
}
check shared "$builddir/lib/libprescore-cl.so"
check bench "$builddir/bench/prescore-bench"
members=$(mktemp -d)
trap 'rm -rf "$members"' EXIT
archive=$(cd "$builddir/lib" && pwd)/libprescore-cl.a
(cd "$members" && $triplet-ar x "$archive")
objs=("$members"/*.o)
nobj=0
[ -e "${objs[0]}" ] && nobj=${#objs[@]}
bad=$( ( ((nobj)) && file "${objs[@]}") | grep -v 'ELF 64-bit LSB relocatable, ARM aarch64' || true)
if ((nobj == 0)) || [ -n "$bad" ]; then
    log "static archive members not all aarch64 ELF: ${bad:-no members}"
    fail=1
else
    echo "$builddir/lib/libprescore-cl.a: $nobj members, all ELF 64-bit LSB relocatable, ARM aarch64"
fi

for p in "${guarded_before[@]}"; do
    installed "$p" || {
        log "build machine package $p is no longer installed"
        fail=1
    }
done

clblast=no
grep -q 'PS_HAVE_CLBLAST' "$builddir/compile_commands.json" 2>/dev/null && clblast=yes
if ((fail)); then
    log "FAILED"
    exit 1
fi
echo "cross_arm64: OK: $builddir/lib/libprescore-cl.so, libprescore-cl.a ($nobj objects)," \
    "bench/prescore-bench are ELF aarch64; OpenCL: $opencl, CLBlast: $clblast, $((SECONDS - start)) s"
