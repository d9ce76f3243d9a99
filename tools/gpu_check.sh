#!/usr/bin/env bash
# GPU check for libprescore-cl on a borrowed machine (no network, no apt needed).
#
#   bash tools/gpu_check.sh [OUT]      (default OUT: gpu-check-YYYYmmdd-HHMMSS)
#
# Records the machine (uname, nvidia-smi, lspci, OpenCL ICDs, vendor OpenCL
# libraries), installs carried .deb files (PRESCORE_DEBS, default tools/debs)
# when root, registers a vendor ICD the loader does not see (a private
# vendors directory in OUT, exported as OCL_ICD_VENDORS), then, when an OpenCL
# device of the wanted type is visible: builds in build-gpu, runs the device
# test suite and the benchmark (built-in table, exact n=8192, prescore
# n=32768, decode n=131072), each under `timeout` (about 9 minutes at most in
# all). Every step
# has a log in OUT and its exit status in OUT/summary.txt; the script goes on
# after failures and exits 0.
#
# Environment: PRESCORE_CHECK_DEVICE  device type or name (default gpu)
#   PRESCORE_CHECK_SUITES  meson test selection (default "--suite device")
#   PRESCORE_CHECK_QUICK=1 small sizes (to try the script on a CPU device)
#   PRESCORE_BUILD_DIR     build directory (default build-gpu)
set -u
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
DEBS=$(realpath -m "${PRESCORE_DEBS:-$(dirname "$0")/debs}")
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) && cd "$(dirname "$0")/.." || exit 1
DEV=${PRESCORE_CHECK_DEVICE:-gpu}
SUITES=${PRESCORE_CHECK_SUITES:---suite device}
BUILD=${PRESCORE_BUILD_DIR:-build-gpu}
export PRESCORE_CACHE_DIR=$OUT/kernel-cache
STEPS=$OUT/steps.txt; : >"$STEPS"
have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "[gpu_check] $*" | tee -a "$OUT/notes.txt" >&2; }

# run NAME[.EXT] SECONDS CMD...: stdout+stderr to OUT/NAME.log, or with an
# extension stdout to OUT/NAME.EXT and stderr to OUT/NAME.log; status to STEPS.
run() {
    local name=${1%%.*} file=$1 t=$2 rc; shift 2
    echo "[gpu_check] $name: $*" >&2
    if [ "$file" = "$name" ]; then timeout -k 10 "$t" "$@" >"$OUT/$name.log" 2>&1
    else timeout -k 10 "$t" "$@" >"$OUT/$file" 2>"$OUT/$name.log"; fi; rc=$?
    printf '%-16s exit %3d  (%s)\n' "$name" "$rc" "$*" >>"$STEPS"; return $rc
}

# --- the machine ---------------------------------------------------------
run uname 10 uname -a
have nvidia-smi && run nvidia-smi 30 nvidia-smi
have lspci && run lspci 10 sh -c "lspci | grep -Ei 'vga|3d|display|accelerator'"
{ echo "# /etc/OpenCL/vendors"; ls -l /etc/OpenCL/vendors 2>&1
  for f in /etc/OpenCL/vendors/*.icd; do [ -f "$f" ] && echo "$f: $(cat "$f")"; done
  echo "# ldconfig"; ldconfig -p 2>/dev/null | grep -Ei 'OpenCL|nvidia-opencl|amdocl|igdrcl|libcuda'
} >"$OUT/icd.log" 2>&1
find /usr/lib* /usr/local /opt -maxdepth 6 \( -name 'libnvidia-opencl.so*' -o \
    -name libamdocl64.so -o -name libigdrcl.so -o -name 'libcuda.so*' \) \
    2>/dev/null | sort >"$OUT/vendor-libs.txt"
say "vendor libraries: $(tr '\n' ' ' <"$OUT/vendor-libs.txt")"

# --- carried packages ----------------------------------------------------
if ! ls "$DEBS"/*.deb >/dev/null 2>&1; then say "no .deb files in $DEBS"
elif [ "$(id -u)" = 0 ]; then run dpkg 120 sh -c "dpkg -i '$DEBS'/*.deb"
else say "not root: .deb files in $DEBS not installed"; fi

# --- OpenCL devices ------------------------------------------------------
ensure_build() {  # meson setup (once) + compile; 1 when it cannot
    have meson || { say "meson missing: cannot build"; return 1; }
    [ -f "$BUILD/build.ninja" ] || run setup 60 meson setup "$BUILD" || return 1
    run compile 120 meson compile -C "$BUILD"
}
register_icd() {  # $1 = force: register even a library some .icd names
    local stem lib
    for stem in libnvidia-opencl libamdocl64 libigdrcl; do
        lib=$(grep "/$stem\.so" "$OUT/vendor-libs.txt" | grep -vE 'i386|lib32' | head -1)
        [ -z "$lib" ] || { [ "$1" != force ] && grep -qs "$stem" /etc/OpenCL/vendors/*.icd; } && continue
        mkdir -p "$OUT/vendors"; cp /etc/OpenCL/vendors/*.icd "$OUT/vendors/" 2>/dev/null
        echo "$lib" >"$OUT/vendors/$stem.icd"
        export OCL_ICD_VENDORS=$OUT/vendors; say "registered $lib in $OCL_ICD_VENDORS"
    done
}
count_devices() {  # lists devices into OUT/devices.*, prints how many match DEV
    local bench=$BUILD/bench/prescore-bench
    [ -x "$bench" ] || bench=build/bench/prescore-bench
    have clinfo && run clinfo 30 clinfo -l
    if [ -x "$bench" ] && run devices.jsonl 30 "$bench" --list-devices --json; then
        case $DEV in gpu|cpu|accelerator) grep -c "\"type\":\"$DEV\"" "$OUT/devices.jsonl" ;;
        *) grep -ci "\"name\":\"[^\"]*$DEV" "$OUT/devices.jsonl" ;; esac
    elif have clinfo; then
        clinfo --raw >"$OUT/clinfo-raw.txt" 2>&1
        grep -c "CL_DEVICE_TYPE_${DEV^^}" "$OUT/clinfo-raw.txt"
    else echo 0; fi
}
register_icd ""
have clinfo || [ -x "$BUILD/bench/prescore-bench" ] || [ -x build/bench/prescore-bench ] || ensure_build
n=$(count_devices)
if [ "$n" = 0 ] && [ -z "${OCL_ICD_VENDORS:-}" ] && grep -qE 'opencl|amdocl|igdrcl' "$OUT/vendor-libs.txt"; then
    register_icd force; n=$(count_devices)
fi
if [ "$n" = 0 ]; then
    { echo "no OpenCL driver there: no OpenCL '$DEV' device visible ($(date))"
      echo "vendor libraries found:"; sed 's/^/  /' "$OUT/vendor-libs.txt"
      echo "ICD files and loader:"; sed 's/^/  /' "$OUT/icd.log"
      echo "devices seen:"; cat "$OUT/clinfo.log" "$OUT/devices.jsonl" 2>/dev/null | sed 's/^/  /'
      echo "steps:"; cat "$STEPS"; } | tee "$OUT/summary.txt"
    exit 0
fi

# --- build, tests, benchmark ---------------------------------------------
ensure_build || { { echo "build failed or meson missing: see $OUT"; cat "$STEPS"; } |
    tee "$OUT/summary.txt"; exit 0; }
BENCH=$BUILD/bench/prescore-bench
count_devices >/dev/null
rm -f "$BUILD/meson-logs/testlog.json"
# shellcheck disable=SC2086  # SUITES is a list of meson test arguments
PRESCORE_DEVICE=$DEV run tests 180 meson test -C "$BUILD" $SUITES --print-errorlogs
cp "$BUILD/meson-logs/testlog.json" "$OUT/testlog.json" 2>/dev/null
if [ "${PRESCORE_CHECK_QUICK:-0}" = 1 ]; then tab=(--table --n 1024 --repeat 1); ne=1024; np=4096; nd=8192
else tab=(); ne=8192; np=32768; nd=131072; fi
run table.jsonl 100 "$BENCH" --device "$DEV" --json "${tab[@]}"
run exact.jsonl 30 "$BENCH" --device "$DEV" --method exact --n $ne --d 64 --json --peak --gemm-roof
run prescore.jsonl 40 "$BENCH" --device "$DEV" --method prescore --n $np --workload heavy --check --json
run decode.jsonl 60 "$BENCH" --device "$DEV" --decode --n $nd --steps 16 --workload heavy --check --json

# --- summary -------------------------------------------------------------
{
    echo "libprescore-cl GPU check, $(date), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "device selector: $DEV   OCL_ICD_VENDORS=${OCL_ICD_VENDORS:-}"
    have nvidia-smi && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo; echo "steps (exit 124/137: timed out):"; cat "$STEPS"
    echo; python3 - "$OUT" "$DEV" <<'EOF'
import json, os, sys
out, dev = sys.argv[1], sys.argv[2]
f = lambda x: "-" if x is None else f"{x:.4f}"
def rows(name):
    try: return [json.loads(l) for l in open(os.path.join(out, name)) if l.strip()]
    except (OSError, ValueError) as e: print(f"{name}: unreadable ({e})"); return []
for d in rows("devices.jsonl"):
    if d["type"] == dev or dev.lower() in d["name"].lower():
        print(f"device: {d['name']} ({d['vendor']}), driver {d['driver_version']}, "
              f"{d['device_version']}, {d['compute_units']} CUs, "
              f"{d['global_mem_size'] / 2**30:.1f} GiB"); break
res = {}
for t in rows("testlog.json"):
    res.setdefault(t["result"], []).append(t["name"].split(" / ")[-1])
print("tests: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(res.items())))
for k, v in sorted(res.items()):
    if k != "OK": print(f"  {k}: {' '.join(v)}")
print("\nkey figures:")
for name in ("exact.jsonl", "prescore.jsonl"):
    for r in rows(name):
        extra = {k: r[k] for k in ("peak_gflops", "roof_gflops", "rel_error",
                                   "heavy_recall", "floor_error") if k in r}
        print(f"  {r['method']:9} n={r['n']:6} time {r['time_ms']:.3f} ms, "
              f"{r['gflops']:.1f} GFLOP/s {extra}")
for r in rows("decode.jsonl"):
    print(f"  decode    n={r['n']:6} prescore {r['decode_ms']:.3f} ms, exact "
          f"{r['exact_decode_ms']:.3f} ms ({r['speedup']:.1f}x), append {r['append_ms']:.3f} ms, "
          f"exact/bandwidth {f(r.get('exact_decode_bandwidth_ratio'))}, "
          f"rel_error {f(r.get('rel_error'))}")
print("  table (workload n method: ms, speedup, rel_error, heavy_recall):")
for r in rows("table.jsonl"):
    if r["method"] in ("exact", "hyper", "prescore"):
        print(f"    {r['workload']:8} {r['n']:6} {r['method']:9} {r['time_ms']:10.3f} "
              f"{r['speedup']:7.2f} {f(r.get('rel_error'))} {f(r.get('heavy_recall'))}")
EOF
    [ -f "$OUT/testlog.json" ] && echo "cmocka tests: $(python3 tools/test_summary.py "$BUILD")"
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
exit 0
