#!/usr/bin/env python3
"""Figures from prescore-bench JSON lines (bench/README.md, "Scripts").

  bench/plot.py --table docs/data/table.jsonl --sweep docs/data/budget_sweep.jsonl \
                --out docs/figures

--table: rows of the built-in workload table (prescore-bench --json, no other
options) -> time_vs_n.png, time against n on log-log axes per method, one panel
per workload, bars from the fastest to the slowest seed.
--sweep: single-run rows with --check over budgets (bench/quality.sh) ->
error_vs_budget.png, rel_error and heavy_recall against the budget m per
method (mean over seeds, band min..max), hyper as a horizontal reference line.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("bench/plot.py needs matplotlib: pip install matplotlib")

METHOD_ORDER = ["exact", "hyper", "prescore", "prescore-kmeans", "prescore-leverage",
                "prescore-norm"]


def read_rows(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{line_no}: not a JSON line ({e})")
    if not rows:
        sys.exit(f"{path}: no rows")
    return rows


def ordered(methods):
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_ORDER)


def subtitle(rows):
    r = rows[0]
    return f"{r.get('device', '?')}, d = {r.get('d')}, prescore-cl {r.get('version', '?')}"


def plot_table(rows, out_dir):
    rows = [r for r in rows if r.get("mode") == "table"]
    if not rows:
        sys.exit("--table: no table-mode rows (run prescore-bench --json without options)")
    workloads = sorted({r["workload"] for r in rows}, key=lambda w: (w != "heavy", w))
    fig, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.5),
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        by_method = defaultdict(list)
        for r in rows:
            if r["workload"] == workload:
                by_method[r["method"]].append(r)
        for method in ordered(by_method):
            pts = sorted(by_method[method], key=lambda r: r["n"])
            n = [r["n"] for r in pts]
            t = [r["time_ms"] for r in pts]
            lo = [r["time_ms"] - r["time_min_ms"] for r in pts]
            hi = [r["time_max_ms"] - r["time_ms"] for r in pts]
            ax.errorbar(n, t, yerr=[lo, hi], marker="o", capsize=3, label=method,
                        linestyle="--" if method == "exact" else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n (tokens, n_q = n_k)")
        ax.set_ylabel("time per call (ms)")
        ax.set_title(f"workload {workload}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("prescore-bench table: time vs n (mean over seeds, bars min..max)\n"
                 + subtitle(rows), fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, "time_vs_n.png")
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def plot_sweep(rows, out_dir):
    rows = [r for r in rows if r.get("rel_error") is not None]
    if not rows:
        sys.exit("--sweep: no rows with --check metrics")
    groups = defaultdict(lambda: defaultdict(list))  # method -> budget -> rows
    for r in rows:
        budget = r.get("budget", r["n"]) if r["method"] != "hyper" else r["n"]
        groups[r["method"]][budget].append(r)
    metrics = [("rel_error", "rel_error (||O - O_exact|| / ||O_exact||)", "log"),
               ("heavy_recall", "heavy_recall (share of exact mass reached)", "linear")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 4.5), squeeze=False)
    for ax, (metric, label, yscale) in zip(axes[0], metrics):
        for method in ordered(groups):
            if method == "hyper":
                vals = [r[metric] for rs in groups[method].values() for r in rs]
                ax.axhline(mean(vals), color="black", linestyle=":", label="hyper (all keys)")
                continue
            budgets = sorted(groups[method])
            ys = [mean(r[metric] for r in groups[method][m]) for m in budgets]
            lo = [min(r[metric] for r in groups[method][m]) for m in budgets]
            hi = [max(r[metric] for r in groups[method][m]) for m in budgets]
            line, = ax.plot(budgets, ys, marker="o", label=method)
            ax.fill_between(budgets, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_yscale(yscale)
        ax.set_xlabel("budget m (keys kept)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(f"error vs budget, workload {r0.get('workload', '?')}, n = {r0['n']} "
                 "(mean over seeds, band min..max)\n" + subtitle(rows), fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, "error_vs_budget.png")
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", help="JSON lines of the table mode")
    ap.add_argument("--sweep", help="JSON lines of a budget sweep with --check")
    ap.add_argument("--out", default=".", help="directory for the PNGs")
    args = ap.parse_args()
    if not args.table and not args.sweep:
        ap.error("give --table and/or --sweep")
    os.makedirs(args.out, exist_ok=True)
    if args.table:
        plot_table(read_rows(args.table), args.out)
    if args.sweep:
        plot_sweep(read_rows(args.sweep), args.out)


if __name__ == "__main__":
    main()
