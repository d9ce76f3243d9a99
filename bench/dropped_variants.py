#!/usr/bin/env python3
"""The design comparison behind the dropped-key residual (docs/HYPER.md,
docs/DECISIONS.md): on the 512-token MiniLM file, all 6 layers x 12 heads,
3 seeds, where a PRESCORE plan's kept keys fit in one block, what the
residual's s samples buy when spent on the keys the selection dropped.

The kept sets (top-m and stratified, g = m/8 heavy keys) come from the
library (prescore.select_keys); the attention of every variant is computed
here in float64 NumPy, and hyper at the same b, s, g through the library:

  floor          exact attention over the kept keys with their weights
                 (what a one-block plan computed before)
  iid / sys      plus s draws of the dropped keys, uniform with replacement
                 or systematic (the library's choice)
  a=S/(S+r), a=.5  how a weighted selection's kept weights w are mixed
                 with the draws' estimate: w -> 1 + a (w - 1), draws nd (1-a)/r

  PYTHONPATH=python PRESCORE_LIB=build/lib/libprescore-cl.so \\
      python3 bench/dropped_variants.py [--data FILE]
Prints one line per (b = s, m): the mean rel_error of each variant."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_real import read_psqkv  # noqa: E402

import prescore  # noqa: E402


def attend(q, k, v, log_w=None):
    sc = q.astype(np.float64) @ k.astype(np.float64).T / np.sqrt(q.shape[1])
    if log_w is not None:
        sc = sc + log_w[None, :]
    p = np.exp(sc - sc.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)) @ v


def rel(o, ref):
    return float(np.linalg.norm(o - ref) / np.linalg.norm(ref))


def variants(q, k, v, ref, m, s, g, seed, ctx, out):
    n = k.shape[0]
    for sel in ("top", "stratified"):
        idx, cnt, lw = prescore.select_keys(k[None], m, selection=sel, weights=True,
                                            global_keys=g, seed=seed, context=ctx)
        c = int(cnt[0])
        idx = idx[0, :c].astype(int)
        lw = np.zeros(c) if sel == "top" else lw[0, :c].astype(np.float64)
        out.setdefault(sel + " floor", []).append(rel(attend(q, k[idx], v[idx], lw), ref))
        kept = np.zeros(n, bool)
        kept[idx] = True
        drop = np.flatnonzero(~kept)
        nd = len(drop)
        rng = np.random.default_rng(1000 + seed)
        w = np.exp(lw)
        drawn_kept = int((w > 1.0 + 1e-6).sum())
        r = min(s, nd)
        draws = {"iid": drop[rng.integers(0, nd, s)],
                 "sys": drop[np.floor((np.arange(r) + rng.random()) * nd / r).astype(int)]}
        for dname, dr in draws.items():
            mixes = {"a=S/(S+r)": drawn_kept / (drawn_kept + len(dr)),
                     "a=.5": 0.5 if drawn_kept else 0.0}
            for aname, a in mixes.items():
                keys = np.concatenate([idx, dr])
                lws = np.concatenate([np.log1p(a * np.expm1(lw)),
                                      np.full(len(dr), np.log((1 - a) * nd / len(dr)))])
                out.setdefault("%s %s %s" % (sel, dname, aname), []).append(
                    rel(attend(q, k[keys], v[keys], lws), ref))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "data",
                                                   "minilm-l6-gpl-3-512.psqkv"))
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    f = read_psqkv(args.data)
    x = f["data"]
    ctx = prescore.Context()
    for b, m in ((128, 128), (128, 64), (64, 64), (256, 128), (256, 64)):
        s, g = b, m // 8
        per_head = {}
        for layer in range(x.shape[0]):
            for head in range(x.shape[1]):
                q, k, v = x[layer, head]
                ref = attend(q, k, v)
                out = {}
                for seed in range(args.seeds):
                    o = prescore.attention(q[None], k[None], v[None], method="hyper", block=b,
                                           samples=s, global_keys=g, min_seq_len=64,
                                           seed=seed, context=ctx)[0]
                    out.setdefault("hyper", []).append(rel(o, ref))
                    variants(q, k, v, ref, m, s, g, seed, ctx, out)
                for key, vals in out.items():
                    per_head.setdefault(key, []).append(np.mean(vals))
        print("b = s = %d, m = %d, g = %d:" % (b, m, g),
              ", ".join("%s %.3f" % (key, np.mean(vals)) for key, vals in per_head.items()),
              flush=True)


if __name__ == "__main__":
    main()
