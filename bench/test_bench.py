#!/usr/bin/env python3
"""Tests of prescore-bench.

  test_bench.py PRESCORE_BENCH            device test (meson test bench_check)
  test_bench.py PRESCORE_BENCH --inputs   host only (meson test bench_inputs)

--inputs: --data inputs that must fail fast, before any device or any
allocation sized by the file's header:
- a FIFO (no writer): refused at once (a blocking open() would hang), the
  message names it;
- sparse files whose header claims d = 40 (15 GiB) or n = 2^31 (192 GiB):
  the library's own validation message, in well under a second, under an
  address-space limit of 1 GiB (a bench that allocated Q, K, V from the
  header first would fail with "out of host memory" instead).

Device test: runs the bench on the heavy workload and checks the metrics'
defining properties.

- a small valid PSQKV file whose layer 0 holds values 3e38 (q.k overflows)
  and layer 1 holds 0.5: --check reports both rows, then exits 3 naming the
  NaN metric (rel_error) and the row;
- exact: rel_error 0, heavy_recall 1, floor_error 0; the measured planted
  mass share (heavy_mass) is near the 65% the workload is built for;
- prescore-norm at m = n/4 of n = 4096 (PRESCORE_BENCH_CHECK_TABLE_N
  overrides n): the planted keys have the largest norms, so they are kept,
  n/4 keys kept, floor_error well below 1,
  heavy_recall in (0, 1] (+ tolerance: samples can repeat); the oracle's
  floor no worse, n/4 random keys' floor over twice as bad; the weighted
  selection (16 global keys) below half the random floor, named in the row;
  --selection best refused;
- the inputs do not depend on the method seed: exact with --seed 7 gives the
  same heavy_mass, and --data-seed changes it;
- --data of an .npy [layers, heads, 3, n, d] array, of three .npy files
  (q,k,v) and of a safetensors file (tensors q, k, v): the rows of the PSQKV
  file with the same values;
- --dtype / --layout: fp16 exact within 1e-3 of fp32 exact on the same
  rounded inputs, [B,T,H,D] exact equal to it, fp16 device bytes <= 0.6x;
- --version (JSON and text): version, 64-hex kernel hash, device and driver,
  the same in every JSON row;
- table mode with one n (4096, PRESCORE_BENCH_CHECK_TABLE_N overrides): JSON rows with mean, min, max and per_seed, 3 seeds
  for hyper, speedup 1 for exact;
- --decode at n = 4096 (PRESCORE_BENCH_CHECK_TABLE_N overrides), 4 steps, --check
  (heavy workload, budget n/4):
  every field of the row, rel_error finite and below 1, the kept set within
  its budget; an exact cache's decode equals exact decode (rel_error 0);
  --data: one row per layer with the file's last rows as the steps; the
  text line.

--inputs also checks --decode's option refusals (host only).
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

try:
    import resource
except ImportError:  # not POSIX: no address-space limit
    resource = None

EXIT_NON_FINITE = 3
AS_LIMIT = 1 << 30  # bytes of address space for the --inputs runs


def run(bench, *args):
    out = subprocess.run([bench, "--json", *args], check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def write_psqkv(path, n, d, values=(0.5,), sparse=False, fp16=False):
    """A PSQKV file (docs/DATA.md) of one head and one layer per entry of
    values (model layers 0, 1, ...), each of whose Q, K, V holds only that
    value (fp32); sparse: only the header is written and the data is a hole
    of the right length."""
    prov = b"test_bench.py: synthetic"
    layers, heads = len(values), 1
    header_size = (40 + 4 * (layers + heads) + len(prov) + 63) // 64 * 64
    head = b"PSQKV\0\0\0" + struct.pack("<8I", 1, header_size, 1 if fp16 else 2, layers,
                                          heads, n, d, len(prov))
    head += struct.pack("<%dI" % (layers + heads), *range(layers), 0) + prov
    head = head.ljust(header_size, b"\0")
    data_bytes = layers * heads * 3 * n * d * (2 if fp16 else 4)
    with open(path, "wb") as f:
        f.write(head)
        if sparse:
            f.truncate(header_size + data_bytes)
        else:
            assert not fp16
            for v in values:
                f.write(struct.pack("<f", v) * (heads * 3 * n * d))


def as_limit_works(bench):
    """Whether the bench starts under the address-space limit at all (a
    sanitizer build reserves terabytes of shadow memory and cannot)."""
    if resource is None:
        return False
    r = subprocess.run([bench, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS,
                                                             (AS_LIMIT, AS_LIMIT)))
    return r.returncode == 0


def run_failing(bench, args, limit=False, timeout=20):
    """Runs the bench expecting a quick failure: (exit status, stderr, seconds)."""
    pre = None
    if limit:
        pre = lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    t0 = time.monotonic()
    try:
        r = subprocess.run([bench, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, preexec_fn=pre)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: prescore-bench {' '.join(args)} still running after {timeout} s")
    elapsed = time.monotonic() - t0
    sys.stderr.write(r.stderr)
    return r.returncode, r.stderr, elapsed


def check_inputs(bench):
    limit = as_limit_works(bench)
    if not limit:
        print("note: the bench does not start under a 1 GiB address-space limit here "
              "(sanitizer build?): the header cases run without it")
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "fifo.psqkv")
        os.mkfifo(fifo)
        rc, err, secs = run_failing(bench, ["--data", fifo])
        expect(rc == 1 and "a FIFO, not a regular file" in err and secs < 5,
               f"--data FIFO: exit {rc} in {secs:.2f} s, the message names the FIFO")
        rc, err, secs = run_failing(bench, ["--data", tmp])
        expect(rc == 1 and "a directory, not a regular file" in err,
               f"--data DIRECTORY: exit {rc}, the message names the directory")

        cases = [
            ("d = 40 (15 GiB sparse)", dict(n=1 << 25, d=40),
             "d = 40: head dims must be a multiple of"),
            ("n = 2^31 (192 GiB sparse)", dict(n=1 << 31, d=16, fp16=True),
             "must be <= 1073741824"),
        ]
        for what, shape, message in cases:
            path = os.path.join(tmp, "sparse.psqkv")
            try:
                write_psqkv(path, sparse=True, **shape)
            except OSError as e:
                print(f"note: skipped {what}: cannot create the sparse file ({e})")
                continue
            rc, err, secs = run_failing(bench, ["--data", path, "--check"], limit=limit)
            os.remove(path)
            expect(rc == 2 and message in err and "out of host memory" not in err
                   and secs < 5,
                   f"--data header {what}: exit {rc} in {secs:.2f} s with the library's "
                   f"message, before allocating" + (" (1 GiB address space)" if limit else ""))


DECODE_FIELDS = (
    "mode", "method", "score", "device", "n", "steps", "decode_queries", "capacity", "d",
    "heads", "kv_heads", "batch", "dtype", "shape", "workload", "seed", "budget",
    "keep_ratio", "sink", "window", "rescore_growth", "prefill_ms", "append_ms",
    "append_ms_p90", "append_ms_max", "decode_ms", "decode_ms_p90", "decode_ms_max",
    "exact_decode_ms", "exact_decode_ms_p90", "exact_decode_ms_max", "tokens_per_s",
    "exact_tokens_per_s", "speedup", "device_bytes", "length", "kept", "attended", "rescores",
    "exact_bytes", "bandwidth_gbs", "peak_bandwidth_gbs", "exact_decode_bandwidth_ratio",
    "rel_error", "rel_error_max", "lse_error", "version", "kernel_hash", "driver")


def check_version(bench, row):
    """--version names the build and the device a run would use, and every
    JSON row carries the same version, kernel hash and driver."""
    v = run(bench, "--version")
    expect(len(v) == 1 and all(f in v[0] for f in ("version", "kernel_hash", "device",
                                                    "driver", "device_version", "shape")),
           "--version --json: one object with version, kernel_hash, device, driver")
    v = v[0]
    h = v["kernel_hash"]
    expect(len(h) == 64 and all(c in "0123456789abcdef" for c in h),
           f"kernel_hash {h[:12]}... is 64 hex digits")
    expect(all(row[f] == v[f] for f in ("version", "kernel_hash", "driver", "device")),
           "a JSON row's version, kernel_hash, driver and device match --version")
    text = subprocess.run([bench, "--version"], check=True, stdout=subprocess.PIPE,
                          text=True).stdout
    expect(v["version"] in text and h in text and v["driver"] in text,
           "--version text: version, kernel hash and driver")
    code, err, _ = run_failing(bench, ["--version", "--device", "no-such-device-xyz"])
    expect(code == 0, "--version without a matching device still names the build")


def check_decode(bench, n):
    common = ["--decode", "--n", str(n), "--steps", "4", "--check", "--workload", "heavy"]
    row = run(bench, *common, "--budget", str(n // 4))[0]
    missing = [f for f in DECODE_FIELDS if f not in row]
    expect(not missing, f"--decode row has every field (missing: {missing})")
    expect(row["mode"] == "decode" and row["method"] == "prescore" and row["kv_heads"] == 8
           and row["heads"] == 8 and row["window"] == 256 and row["capacity"] == n + 4
           and row["length"] == n + 4, "--decode defaults: prescore, 8 KV heads, window 256")
    rel = row["rel_error"]
    expect(rel is not None and math.isfinite(rel) and 0 <= rel < 1
           and row["rel_error_max"] >= rel, f"--decode rel_error {rel} finite and < 1")
    expect(0 < row["kept"] <= n // 4 and row["attended"] <= row["length"],
           f"--decode keeps {row['kept']} <= {n // 4} keys, attends {row['attended']}")
    expect(row["decode_ms"] > 0 and row["exact_decode_ms"] > 0 and row["prefill_ms"] > 0
           and row["decode_ms"] <= row["decode_ms_p90"] <= row["decode_ms_max"],
           "--decode times positive, median <= p90 <= max")
    ex = run(bench, *common, "--method", "exact")[0]
    expect(ex["rel_error"] == 0 and ex["kept"] == 0 and ex["attended"] == ex["length"],
           "--decode exact cache: cache decode == exact decode")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "two.psqkv")
        write_psqkv(path, n=64, d=16, values=(0.5, 0.25))
        rows = run(bench, "--decode", "--data", path, "--steps", "4", "--check")
        expect(len(rows) == 2 and rows[1]["layer"] == 1 and rows[0]["n"] == 60
               and rows[0]["rel_error"] is not None and rows[0]["rel_error"] < 1e-5,
               "--decode --data: one row per layer, n = rows - steps, equal rows exact")
    text = subprocess.run([bench, "--decode", "--n", "512", "--steps", "2"], check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout
    expect(text.splitlines()[-1].startswith("decode prescore n=512 steps=2"),
           "--decode text line")


def check_decode_options(bench):
    for args, message in ((["--decode", "--repeat", "3"], "--decode takes no --repeat"),
                          (["--steps", "4"], "--steps needs --decode"),
                          (["--decode", "--method", "score-norm"], "not score-norm"),
                          (["--decode", "--budget", "8", "--keep-ratio", "0.5"],
                           "one of --budget and --keep-ratio")):
        rc, err, _ = run_failing(bench, args)
        expect(rc == 1 and message in err, f"{' '.join(args)}: exit {rc}, refused")


def check_non_finite(bench):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "huge.psqkv")
        write_psqkv(path, n=16, d=16, values=(3e38, 0.5))
        r = subprocess.run([bench, "--json", "--data", path, "--check", "--repeat", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=300)
        sys.stderr.write(r.stderr)
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        expect(r.returncode == EXIT_NON_FINITE, f"--data of 3e38 values: exit {r.returncode}, "
               f"{EXIT_NON_FINITE} expected")
        expect(len(rows) == 2 and rows[0]["layer"] == 0 and rows[0]["rel_error"] is None,
               "the row of layer 0 is still reported (rel_error null)")
        expect(rows[1]["layer"] == 1 and rows[1]["rel_error"] == 0,
               "the next layer (finite values) still runs: rel_error 0")
        expect("rel_error is NaN" in r.stderr and "non-finite error metric" in r.stderr
               and "huge.psqkv layer 0" in r.stderr,
               "stderr names the metric and the row")


def npy_bytes(shape, data):
    """A version-1 .npy file of little-endian float32 @data of @shape."""
    dict_ = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(
        "%d, " % x for x in shape)
    pad = (10 + len(dict_) + 1 + 63) // 64 * 64 - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", pad) + dict_.ljust(pad - 1).encode() + \
        b"\n" + data


def check_npy(bench):
    """--data reads a .npy [layers, heads, 3, n, d] array, three .npy files
    (q,k,v) and a safetensors file as the PSQKV file with the same values:
    the same rows (layers and heads from 0)."""
    import random
    layers, heads, n, d = 2, 2, 256, 32
    rng = random.Random(5)
    data = struct.pack("<%df" % (layers * heads * 3 * n * d),
                       *(rng.gauss(0, 1) for _ in range(layers * heads * 3 * n * d)))
    prov = b"test_bench.py: npy twin"
    header_size = (40 + 4 * (layers + heads) + len(prov) + 63) // 64 * 64
    psqkv = b"PSQKV\0\0\0" + struct.pack("<8I", 1, header_size, 2, layers, heads, n, d,
                                          len(prov))
    psqkv += struct.pack("<%dI" % (layers + heads), *range(layers), *range(heads)) + prov
    tensor = n * d * 4
    per = [b"".join(data[((lh * 3) + t) * tensor:((lh * 3) + t + 1) * tensor]
                    for lh in range(layers * heads)) for t in range(3)]  # q, k, v each
    header, offset = {}, 0
    for name, t in zip("qkv", per):
        header[name] = {"dtype": "F32", "shape": [layers, heads, n, d],
                        "data_offsets": [offset, offset + len(t)]}
        offset += len(t)
    header["__metadata__"] = {"provenance": "test_bench.py: safetensors twin"}
    text = json.dumps(header).encode()
    files = {"x.psqkv": psqkv.ljust(header_size, b"\0") + data,
             "x.npy": npy_bytes((layers, heads, 3, n, d), data),
             "q.npy": npy_bytes((layers, heads, n, d), per[0]),
             "k.npy": npy_bytes((layers, heads, n, d), per[1]),
             "v.npy": npy_bytes((layers, heads, n, d), per[2]),
             "x.safetensors": struct.pack("<Q", len(text)) + text + b"".join(per)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
        rows = {}
        for name in ("x.psqkv", "x.npy", "q.npy,k.npy,v.npy", "x.safetensors"):
            path = ",".join(os.path.join(tmp, p) for p in name.split(","))
            rows[name] = run(bench, "--data", path, "--method", "hyper", "--check",
                             "--repeat", "1", "--min-seq-len", "64", "--head", "1",
                             "--block", "64", "--samples", "32")
        a = rows["x.psqkv"]
        expect(len(a) == layers and all(x["n"] == n and x["rel_error"] > 0 for x in a),
               f"--data x.psqkv: one row per layer, n {n}, approximate (rel_error > 0)")
        for name, b in rows.items():
            expect([(x["layer"], x["rel_error"], x["lse_error"]) for x in a] ==
                   [(x["layer"], x["rel_error"], x["lse_error"]) for x in b],
                   f"--data {name} gives the rows of the PSQKV file with the same values")


def check_tensors(bench, n):
    """--dtype and --layout: the inputs are rounded / laid out once and both
    the method and the fp32 exact reference read them, so fp16 exact is
    within fp16 output rounding of the reference, [B, T, H, D] exact is the
    reference (same values, other addresses), and the call's device bytes
    (workspace plus tensors) fall with fp16 storage. Exact rows at n = 1000,
    500 when the device rows are smaller (n < 4096)."""
    base = ["--method", "exact", "--n", "1000" if n >= 4096 else "500", "--heads", "4",
            "--kv-heads", "2", "--check", "--repeat", "1"]
    f32 = run(bench, *base)[0]
    f16 = run(bench, *base, "--dtype", "f16")[0]
    bthd = run(bench, *base, "--layout", "bthd", "--dtype", "f16kv")[0]
    expect(f16["dtype"] == "f16" and f16["layout"] == "bhtd", "--dtype f16 reported")
    expect(0 < f16["rel_error"] < 1e-3, f"fp16 exact rel_error {f16['rel_error']:.2e} < 1e-3")
    expect(bthd["rel_error"] < 1e-5 and bthd["layout"] == "bthd",
           f"[B,T,H,D] f16kv exact rel_error {bthd['rel_error']:.2e} < 1e-5")
    ratio = f16["device_bytes"] / f32["device_bytes"]
    expect(ratio <= 0.6, f"fp16 device bytes {ratio:.3f} x fp32")
    hyper = ["--method", "hyper", "--n", "1000", "--min-seq-len", "256", "--check",
             "--repeat", "1"]
    h32 = run(bench, *hyper)[0]["rel_error"]
    h16 = run(bench, *hyper, "--dtype", "f16", "--layout", "bthd")[0]["rel_error"]
    expect(abs(h16 - h32) <= 0.01 * h32,
           f"hyper fp16 [B,T,H,D] rel_error {h16:.5f} within 1% of fp32's {h32:.5f}")
    # --varlen: exact over packed sequences is the reference (0 error), the
    # row lists the lengths; a long sequence on the approximate path, short
    # ones exact, an empty one.
    vl = run(bench, "--varlen", "100,0,700,40", "--method", "exact", "--heads", "2",
             "--check", "--repeat", "1")[0]
    expect(vl["varlen"] == [100, 0, 700, 40] and vl["n"] == 840 and vl["rel_error"] == 0,
           "--varlen exact: lengths reported, rel_error 0")
    vh = run(bench, "--varlen", "100,0,700,40", "--method", "hyper", "--min-seq-len", "256",
             "--check", "--repeat", "1", "--dtype", "f16kv")[0]
    expect(0 < vh["rel_error"] and vh["heavy_recall"] < 1,
           f"--varlen hyper: approximate ({vh['rel_error']:.3f}) on the long sequence")
    bad = subprocess.run([bench, "--dtype", "f8"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    expect(bad.returncode == 1 and "--dtype" in bad.stderr, "--dtype f8 refused")


def main():
    bench = sys.argv[1]
    if sys.argv[2:] == ["--inputs"]:
        check_inputs(bench)
        check_decode_options(bench)
        return
    check_non_finite(bench)
    check_npy(bench)
    # PRESCORE_BENCH_CHECK_TABLE_N: the n of the device rows below (metrics,
    # table, decode), smaller where exact attention is slow (rusticl/llvmpipe
    # in .ci/run); the checks hold at any n from 1024. m = n / 4 keys kept;
    # --min-seq-len 256 keeps the approximate path below 4096.
    n = int(os.environ.get("PRESCORE_BENCH_CHECK_TABLE_N", "4096"))
    m = str(n // 4)
    common = ["--workload", "heavy", "--n", str(n), "--check", "--repeat", "1",
              "--min-seq-len", "256"]
    ex = run(bench, "--method", "exact", *common)[0]
    expect(ex["rel_error"] == 0 and ex["heavy_recall"] == 1 and ex["floor_error"] == 0,
           "exact: rel_error 0, heavy_recall 1, floor_error 0")
    expect(0.6 < ex["heavy_mass"] < 0.7, f"heavy_mass {ex['heavy_mass']:.4f} near 0.65")

    pn = run(bench, "--method", "prescore-norm", "--budget", m, *common)[0]
    expect(pn["keys_kept"] == n // 4 and pn["budget"] == n // 4, f"prescore-norm keeps {m} keys")
    expect(0 < pn["heavy_recall"] <= 1.01, f"heavy_recall {pn['heavy_recall']:.4f} in (0, 1]")
    expect(0 <= pn["floor_error"] < 0.9, f"floor_error {pn['floor_error']:.4f} < 0.9")
    # The oracle keeps the planted keys (most of the mass) and the heaviest
    # others: no worse than the norm's set; n/4 random keys miss about 12 of
    # the 16 planted keys.
    expect(pn["oracle_floor_error"] <= pn["floor_error"] + 0.02,
           f"oracle_floor_error {pn['oracle_floor_error']:.4f} <= floor_error + 0.02")
    expect(pn["random_floor_error"] > 2 * pn["floor_error"],
           f"random_floor_error {pn['random_floor_error']:.4f} > 2 x floor_error")
    expect(ex["oracle_floor_error"] is None and ex["random_floor_error"] is None,
           "exact: no oracle or random floor (nothing is selected)")
    # The weighted selection: the 16 global keys are the planted ones (their
    # norms are the largest) and the rest is drawn with log-weights, so its
    # floor (with the weights) is near top-m's and far below random keys'.
    pw = run(bench, "--method", "prescore-norm", "--budget", m, "--global", "16",
             "--selection", "weighted", *common)[0]
    expect(pw["selection"] == "weighted" and pw["keys_kept"] == n // 4,
           f"--selection weighted: in the row, {m} keys kept")
    expect(pw["floor_error"] < 0.5 * pw["random_floor_error"],
           f"weighted floor_error {pw['floor_error']:.4f} < half the random keys' "
           f"{pw['random_floor_error']:.4f}")
    expect(pn["selection"] == "top", "the default selection is top")
    code, err, _ = run_failing(bench, ["--method", "prescore", "--selection", "best"])
    expect(code == 1 and "--selection" in err, "--selection best refused")

    check_version(bench, ex)

    ex7 = run(bench, "--method", "exact", "--seed", "7", *common)[0]
    expect(ex7["heavy_mass"] == ex["heavy_mass"], "--seed leaves the inputs unchanged")
    ex_d = run(bench, "--method", "exact", "--data-seed", "7", *common)[0]
    expect(ex_d["heavy_mass"] != ex["heavy_mass"], "--data-seed changes the inputs")

    table_n = str(n)
    check_tensors(bench, n)
    check_decode(bench, n)

    rows = run(bench, "--table", "--n", table_n, "--d", "32", "--repeat", "1")
    expect(len(rows) == 12, "table: 2 workloads x 6 methods at one n")
    hyper = [r for r in rows if r["method"] == "hyper" and r["workload"] == "heavy"][0]
    expect(len(hyper["per_seed"]) == 3 and hyper["time_min_ms"] <= hyper["time_ms"]
           <= hyper["time_max_ms"], "table: 3 seeds, min <= mean <= max")
    exact = [r for r in rows if r["method"] == "exact"][0]
    expect(abs(exact["speedup"] - 1.0) < 1e-9, "table: exact speedup 1")


if __name__ == "__main__":
    main()
