#!/usr/bin/env python3
"""Per-layer evaluation of every approximate method on the recorded real Q/K/V.

For each file / layer / head of data/ and each method (hyper, prescore,
prescore-kmeans, prescore-leverage, prescore-norm) at EQUAL budgets (same
block b, samples s, global keys g; for the prescore-* the same kept-key
budget m), runs

  prescore-bench --data FILE --layer L --head H --method M --check --json
                 --budget m --block b --samples s --global g --min-seq-len 64

and collects rel_error, lse_error, heavy_recall, floor_error and beside it
oracle_floor_error and random_floor_error (the floors of the m keys with the
most exact attention mass and of m uniformly random keys; all but rel_error
and lse_error only where the bench reports them; otherwise "n/a"). For scale it adds the
error of the query-blind "mean of V" stand-in (every output row = the mean of
the values), computed here with numpy from the same file.

Long context: the 16384-token file is also evaluated on its first 4096 and
8192 tokens (prefix copies written to a temporary directory), so one
document gives n = 4096, 8192 and 16384.

Outputs: a markdown table per data set (per layer, the mean over the heads
and the min-max spread) on stdout, the raw rows and the table as JSON
(--json-out, default docs/data/real_eval.json), and with --figure a PNG of
the error against the budget per method.

Usage:
  python3 bench/eval_real.py --bench /tmp/build/bench/prescore-bench \
      --figure docs/figures/real_error_vs_budget.png
(needs numpy; matplotlib for --figure).
"""
import argparse
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_qkv import write_psqkv  # noqa: E402  (one PSQKV writer)

METHODS = ["hyper", "prescore", "prescore-kmeans", "prescore-leverage", "prescore-norm"]
METRICS = ["rel_error", "lse_error", "heavy_recall", "floor_error", "oracle_floor_error",
           "random_floor_error"]


def read_psqkv(path):
    """Header fields, ids, provenance and the data as [L, H, 3, n, d] float32."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"PSQKV\0\0\0":
        raise ValueError("%s: not a PSQKV file" % path)
    (version, header_size, dtype, layers, heads, n, d,
     plen) = struct.unpack_from("<8I", raw, 8)
    if version != 1 or dtype not in (1, 2):
        raise ValueError("%s: version %d dtype %d unsupported" % (path, version, dtype))
    ids = struct.unpack_from("<%dI" % (layers + heads), raw, 40)
    off = 40 + 4 * (layers + heads)
    prov = raw[off:off + plen].decode("utf-8")
    data = np.frombuffer(raw, dtype="<f2" if dtype == 1 else "<f4", offset=header_size)
    data = data.reshape(layers, heads, 3, n, d).astype(np.float32)
    return {"layers": list(ids[:layers]), "heads": list(ids[layers:]), "n": n, "d": d,
            "provenance": prov, "data": data, "dtype": "fp16" if dtype == 1 else "fp32"}


def write_prefix(src, n, path):
    """Writes the first n tokens of every head of src (a read_psqkv dict)."""
    prov = src["provenance"] + "; prefix=first %d tokens (bench/eval_real.py)" % n
    qkv = np.ascontiguousarray(src["data"][:, :, :, :n, :])
    write_psqkv(path, qkv, src["layers"], src["heads"], prov, src["dtype"])


def exact_output(q, k, v, chunk=1024):
    """softmax(Q K^T / sqrt(d)) V in float64, a chunk of query rows at a time."""
    d = q.shape[1]
    kt = k.astype(np.float64).T / np.sqrt(d)
    v64 = v.astype(np.float64)
    out = np.empty((q.shape[0], v.shape[1]))
    for i in range(0, q.shape[0], chunk):
        s = q[i:i + chunk].astype(np.float64) @ kt
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[i:i + chunk] = (p / p.sum(axis=1, keepdims=True)) @ v64
    return out


def baselines(q, k, v, sizes, seed):
    """Query-blind scales of the error: rel_error of answering every query
    with the mean of V, and for each m in sizes the floor of m uniformly
    random keys (rel_error of exact attention over them), what a selection
    that knows nothing must beat."""
    o = exact_output(q, k, v)
    norm = np.linalg.norm(o)
    mean_v = float(np.linalg.norm(v.astype(np.float64).mean(axis=0) - o) / norm)
    rng = np.random.default_rng(seed)
    floors = {}
    for m in sizes:
        idx = np.sort(rng.choice(q.shape[0], size=m, replace=False))
        floors[m] = float(np.linalg.norm(exact_output(q, k[idx], v[idx]) - o) / norm)
    return mean_v, floors


def run_bench(bench, path, layer, head, method, m, b, s, g, min_seq_len, seed):
    cmd = [bench, "--data", path, "--layer", str(layer), "--head", str(head),
           "--method", method, "--block", str(b), "--samples", str(s), "--global", str(g),
           "--min-seq-len", str(min_seq_len), "--seed", str(seed), "--repeat", "1",
           "--check", "--json"]
    if method != "hyper":
        cmd += ["--budget", str(m)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                    res.stderr.strip()[-500:]))
    return json.loads(res.stdout.strip().splitlines()[-1]), cmd


def fmt(vals):
    """'mean [min, max]' of the available values, or n/a."""
    vals = [x for x in vals if x is not None]
    if not vals:
        return "n/a"
    if len(vals) == 1 or min(vals) == max(vals):
        return "%.3f" % vals[0]
    return "%.3f [%.3f, %.3f]" % (np.mean(vals), min(vals), max(vals))


def summarise(rows):
    """Groups rows by (dataset, n, layer, budget, method) over the heads."""
    groups = {}
    for r in rows:
        key = (r["dataset"], r["n"], r["layer"], r["budget_frac"], r["method"])
        groups.setdefault(key, []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], METHODS.index(k[4]))):
        g = groups[key]
        item = {"dataset": key[0], "n": key[1], "layer": key[2], "budget_frac": key[3],
                "method": key[4], "heads": len(g)}
        for mname in METRICS + ["mean_v_error"]:
            vals = [r.get(mname) for r in g if r.get(mname) is not None]
            item[mname] = ({"mean": float(np.mean(vals)), "min": float(min(vals)),
                            "max": float(max(vals))} if vals else None)
        out.append(item)
    return out


def markdown(rows):
    lines = []
    by = {}
    for r in rows:
        by.setdefault((r["dataset"], r["n"]), []).append(r)
    for (ds, n), rs in sorted(by.items(), key=lambda x: (x[0][0], x[0][1])):
        heads = sorted({r["head"] for r in rs})
        seeds = sorted({r.get("seed", "?") for r in rs})
        lines.append("\n**%s, n = %d** (heads %s per layer, method seeds %s; mean [min, max] "
                     "over heads and seeds)\n" % (ds, n, ",".join(str(h) for h in heads),
                                                  ",".join(str(x) for x in seeds)))
        lines.append("| layer | m/n | method | " + " | ".join(METRICS) + " | mean-of-V rel |")
        lines.append("|---|---|---|" + "---|" * (len(METRICS) + 1))
        groups = {}
        for r in rs:
            groups.setdefault((r["layer"], r["budget_frac"], r["method"]), []).append(r)
        first = min(r["budget_frac"] for r in rs)
        for key in sorted(groups, key=lambda k: (k[0], k[1], METHODS.index(k[2]))):
            g = groups[key]
            if key[2] == "hyper" and key[1] != first:
                continue  # hyper keeps every key: one line per layer
            frac = "all" if key[2] == "hyper" else "1/%d" % round(1 / key[1])
            lines.append("| %d | %s | %s | %s | %s |" % (
                key[0], frac, key[2], " | ".join(fmt([r.get(mn) for r in g]) for mn in METRICS),
                fmt([r["mean_v_error"] for r in g])))
    return "\n".join(lines)


def pivot(rows, metric):
    """Compact table: one line per (data set, n, layer, m), one column per method,
    each cell 'mean [min, max]' of the metric over the heads."""
    lines = ["| data | n | layer | m/n | " + " | ".join(METHODS) + " | mean of V |",
             "|---|---|---|---|" + "---|" * (len(METHODS) + 1)]
    keys = sorted({(r["dataset"], r["n"], r["layer"], r["budget_frac"]) for r in rows},
                  key=lambda k: (k[1], k[0], k[2], k[3]))
    for ds, n, layer, frac in keys:
        g = [r for r in rows if (r["dataset"], r["n"], r["layer"], r["budget_frac"]) ==
             (ds, n, layer, frac)]
        cells = [fmt([r.get(metric) for r in g if r["method"] == m]) for m in METHODS]
        mv = fmt([r["mean_v_error"] for r in g if r["method"] == "hyper"]) \
            if metric == "rel_error" else ""
        lines.append("| %s | %d | %d | 1/%d | %s | %s |" % (ds, n, layer, round(1 / frac),
                                                              " | ".join(cells), mv))
    return "\n".join(lines)


def overview(rows, metric):
    """One line per (data set, n, m): the metric averaged over layers, heads and
    seeds per method, with the min-max over the layers' means (for
    floor_error also the floor of m random keys)."""
    extra = metric == "floor_error" and any("random_floor" in r for r in rows)
    lines = ["| data | n | m/n | " + " | ".join(METHODS) + (" | m random keys |" if extra
                                                             else " |"),
             "|---|---|---|" + "---|" * (len(METHODS) + extra)]
    keys = sorted({(r["dataset"], r["n"], r["budget_frac"]) for r in rows},
                  key=lambda k: (k[1], k[0], k[2]))
    for ds, n, frac in keys:
        cells = []
        for m in METHODS:
            g = [r for r in rows if (r["dataset"], r["n"], r["budget_frac"], r["method"]) ==
                 (ds, n, frac, m) and r.get(metric) is not None]
            layers = sorted({r["layer"] for r in g})
            per_layer = [np.mean([r[metric] for r in g if r["layer"] == L]) for L in layers]
            cells.append(fmt(per_layer) if per_layer else "n/a")
        if extra:
            g = [r for r in rows if (r["dataset"], r["n"], r["budget_frac"], r["method"]) ==
                 (ds, n, frac, "hyper")]
            layers = sorted({r["layer"] for r in g})
            cells.append(fmt([np.mean([r["random_floor"] for r in g if r["layer"] == L])
                              for L in layers]))
        lines.append("| %s | %d | 1/%d | %s |" % (ds, n, round(1 / frac), " | ".join(cells)))
    return "\n".join(lines)


def figure(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = sorted({(r["dataset"], r["n"]) for r in rows}, key=lambda x: x[1])
    cols = 2
    rows_n = (len(sets) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.9 * rows_n), squeeze=False)
    for ax, (ds, n) in zip(axes.flat, sets):
        rs = [r for r in rows if r["dataset"] == ds and r["n"] == n]
        fracs = sorted({r["budget_frac"] for r in rs})
        for method in METHODS:
            ys = [np.mean([r["rel_error"] for r in rs
                           if r["method"] == method and r["budget_frac"] == f]) for f in fracs]
            ax.plot(fracs, ys, marker="x" if method == "prescore" else "o",
                    markersize=9 if method == "prescore" else 5,
                    label=method + (" (default: k-means)" if method == "prescore" else ""),
                    linestyle="--" if method in ("hyper", "prescore") else "-")
        mv = np.mean([r["mean_v_error"] for r in rs])
        ax.axhline(mv, color="grey", linestyle=":", label="mean of V")
        ax.set_xscale("log", base=2)
        ax.set_xticks(fracs)
        ax.set_xticklabels(["1/%d" % round(1 / f) for f in fracs])
        ax.set_xlabel("kept keys m / n (hyper: all keys)")
        ax.set_ylabel("rel_error (mean over layers, heads, seeds)", fontsize=8)
        ax.set_title("%s, n = %d" % (ds, n), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Real Q/K/V (all-MiniLM-L6-v2), b = s = 128, g = 0, PoCL CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_tables(rows, args):
    print(markdown(rows))
    for metric in METRICS:
        print("\n%s by method (b = s = %d, g = %d):\n" % (metric, args.block, args.global_keys))
        print(pivot(rows, metric))
    for metric in METRICS + ["mean_v_error"]:
        print("\n%s, mean over layers [min, max of the layer means]:\n" % metric)
        print(overview(rows, metric))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default=os.path.join(root, "build", "bench", "prescore-bench"))
    ap.add_argument("--short", default=os.path.join(root, "data", "minilm-l6-gpl-3-512.psqkv"))
    ap.add_argument("--long", default=os.path.join(root, "data",
                                                   "minilm-l6-valgrind-core-16384.psqkv"))
    ap.add_argument("--long-n", default="4096,8192,16384", help="prefix lengths of --long")
    ap.add_argument("--short-heads", default="0,1,2,3,4,5,6,7,8,9,10,11",
                    help="heads of --short per layer (all layers)")
    ap.add_argument("--fractions", default="8,4,2", help="m = n / each")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--global-keys", type=int, default=0)
    ap.add_argument("--min-seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42, help="method seed of the 512 file")
    ap.add_argument("--long-seeds", default="42,43,44",
                    help="method seeds of the long file (one head per layer: the spread "
                         "comes from the seeds there)")
    ap.add_argument("--json-out", default=os.path.join(root, "docs", "data", "real_eval.json"))
    ap.add_argument("--figure", default=None)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--from-json", default=None,
                    help="only print the tables (and --figure) of an earlier run's JSON")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)["rows"]
        print_tables(rows, args)
        if args.figure:
            figure(rows, args.figure)
        return

    fracs = [1.0 / int(x) for x in args.fractions.split(",")]
    jobs = []  # (dataset label, path run, source file, src dict, heads, seeds)
    long_seeds = [int(x) for x in args.long_seeds.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="eval_real_")
    short = read_psqkv(args.short)
    sh = [int(x) for x in args.short_heads.split(",")]
    jobs.append(("GPL-3 window 0", args.short, args.short, short, sh, [args.seed]))
    long_src = read_psqkv(args.long)
    for n in (int(x) for x in args.long_n.split(",")):
        if n == long_src["n"]:
            jobs.append(("Valgrind manual", args.long, args.long, long_src, long_src["heads"],
                         long_seeds))
        else:
            p = os.path.join(tmp.name, "prefix-%d.psqkv" % n)
            write_prefix(long_src, n, p)
            jobs.append(("Valgrind manual", p, args.long, read_psqkv(p), long_src["heads"],
                         long_seeds))

    rows, command, device = [], None, None
    for label, path, source, src, heads, seeds in jobs:
        n = src["n"]
        for li, layer in enumerate(src["layers"]):
            for head in heads:
                hi = src["heads"].index(head)
                q, k, v = src["data"][li, hi]
                mv, rand_floor = baselines(q, k, v, [int(n * f) for f in fracs],
                                           1000 + 100 * layer + head)
                for seed in seeds:
                    hyper_row = None
                    for frac in fracs:
                        for method in METHODS:
                            if method == "hyper" and hyper_row:
                                # hyper keeps every key: one run, reported at every m
                                rows.append(dict(hyper_row, budget_frac=frac,
                                                 budget=int(n * frac),
                                                 random_floor=rand_floor[int(n * frac)]))
                                continue
                            m = int(n * frac)
                            res, cmd = run_bench(args.bench, path, layer, head, method, m,
                                                 args.block, args.samples, args.global_keys,
                                                 args.min_seq_len, seed)
                            command, device = command or cmd, device or res.get("device")
                            row = {"dataset": label, "file": os.path.basename(source),
                                   "n": n, "layer": layer, "head": head, "seed": seed,
                                   "method": method, "budget_frac": frac, "budget": m,
                                   "block": args.block, "samples": args.samples,
                                   "global": args.global_keys, "mean_v_error": mv,
                                   "random_floor": rand_floor[m],
                                   "time_ms": res.get("time_ms"),
                                   "keys_kept": res.get("keys_kept")}
                            for mname in METRICS:
                                row[mname] = res.get(mname)
                            rows.append(row)
                            if method == "hyper":
                                hyper_row = row
                print("%s n=%d layer %d head %d done" % (label, n, layer, head),
                      file=sys.stderr, flush=True)

    print_tables(rows, args)
    meta = {"date": args.date, "device": device, "bench": args.bench,
            "example_command": " ".join(command or []), "block": args.block,
            "samples": args.samples, "global": args.global_keys,
            "min_seq_len": args.min_seq_len, "seed": args.seed, "long_seeds": long_seeds,
            "budgets": "m = n/%s" % args.fractions.replace(",", ", n/"),
            "missing_metrics": sorted({m for m in METRICS for r in rows if r.get(m) is None}),
            "short_provenance": short["provenance"], "long_provenance": long_src["provenance"]}
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w") as f:
        json.dump({"meta": meta, "summary": summarise(rows), "rows": rows}, f, indent=1)
    if args.figure:
        figure(rows, args.figure)
    tmp.cleanup()


if __name__ == "__main__":
    main()
