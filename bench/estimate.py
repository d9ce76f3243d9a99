#!/usr/bin/env python3
"""How well the per-call error estimate (desc.error_probes, --probes) tracks
the measured error, over heads and seeds (docs/QUALITY.md "Error estimate").

Runs prescore-bench --check --json --probes P on the recorded MiniLM data
(the 512-token file: 6 layers x 12 heads, the approximate path forced with
b = s = 128; the 16384-token file: layers 0, 2, 5) for each method and
method seed, collects per query head the measured rel_error / lse_error and
the plan's estimate of them, and reports the Spearman rank correlation
between estimate and measurement per method and metric (ties ranked by
their mean rank), with the mean absolute difference. Then the estimate's
cost: hyper and prescore at n = 16384 on seeded inputs, median of 5 runs,
without and with the probes.

Usage: python3 bench/estimate.py [--bench build/bench/prescore-bench]
           [--probes 32] [--seeds 3] [--json-out docs/data/estimate.jsonl]
"""
import argparse
import json
import subprocess
import sys

DATA_512 = "data/minilm-l6-gpl-3-512.psqkv"
DATA_16K = "data/minilm-l6-valgrind-core-16384.psqkv"
METHODS = {
    "hyper": ["--method", "hyper"],
    "prescore top": ["--method", "prescore", "--selection", "top", "--sketch", "0"],
    "prescore stratified, sketch 32": ["--method", "prescore", "--selection", "stratified",
                                       "--sketch", "32"],
}


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")


def run(bench, args):
    cmd = [bench, "--json"] + ([] if "--repeat" in args else ["--repeat", "1"]) + args
    print("+ " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cost(bench, probes):
    """Median time of prescore and hyper at n = 16384, 8 heads, d = 64 (seeded
    inputs), without and with the estimate."""
    print("\n| method (n = 16384, 8 heads, d = 64) | time_ms | with %d probes | share |" % probes)
    print("|---|---|---|---|")
    for method in ("hyper", "prescore"):
        base = ["--method", method, "--n", "16384", "--heads", "8", "--d", "64"]
        t0 = run(bench, base + ["--repeat", "5"])[0]["time_ms"]
        t1 = run(bench, base + ["--repeat", "5", "--probes", str(probes)])[0]["time_ms"]
        print("| %s | %.1f | %.1f | +%.1f%% |" % (method, t0, t1, 100.0 * (t1 - t0) / t0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bench/prescore-bench")
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    inputs = {
        "512": [["--data", DATA_512, "--block", "128", "--samples", "128",
                 "--min-seq-len", "64", "--budget", "128"]],
        "16384": [["--data", DATA_16K, "--budget", "4096"]],
    }
    rows = []
    for method, margs in METHODS.items():
        for name, variants in inputs.items():
            for extra in variants:
                if method == "hyper":
                    extra = [x for i, x in enumerate(extra)
                             if x != "--budget" and (i == 0 or extra[i - 1] != "--budget")]
                for seed in range(1, a.seeds + 1):
                    for r in run(a.bench, margs + extra + ["--check", "--probes", str(a.probes),
                                                           "--seed", str(seed)]):
                        r["estimate_method"] = method
                        r["input"] = name
                        rows.append(r)
    if a.json_out:
        with open(a.json_out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print("| method | input | pairs (head x seed) | Spearman rel_error | Spearman lse_error "
          "| mean abs diff rel / lse |")
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        for name in list(inputs) + ["all"]:
            sel = [r for r in rows if r["estimate_method"] == method
                   and (name == "all" or r["input"] == name)]
            hr = [x for r in sel for x in r["head_rel_error"]]
            er = [x for r in sel for x in r["est_rel_error"]]
            hl = [x for r in sel for x in r["head_lse_error"]]
            el = [x for r in sel for x in r["est_lse_error"]]
            if not hr:
                continue
            dr = sum(abs(x - y) for x, y in zip(hr, er)) / len(hr)
            dl = sum(abs(x - y) for x, y in zip(hl, el)) / len(hl)
            print("| %s | %s | %d | %.3f | %.3f | %.3f / %.3f |"
                  % (method, name, len(hr), spearman(hr, er), spearman(hl, el), dr, dl))
    cost(a.bench, a.probes)


if __name__ == "__main__":
    main()
