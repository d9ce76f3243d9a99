#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_desc.c into tests/fuzz/corpus/:
valid tiny descriptors of every method, score and option (so the reference
runs from the first input) and a few invalid ones. The byte layout mirrors
decode_desc() in fuzz_desc.c; rerun after changing it."""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def size(v):
    return bytes([0, v % 80])


def edge(i):
    return bytes([192, i])


def intf(v, lo):
    return bytes([0, v - lo])


def desc(batch=1, heads=1, kv=1, nq=32, nk=32, d=16, dv=16, causal=0, lse=1,
         method=0, score=0, budget=0, clusters=0, iters=0, sink=0, window=0,
         glob=0, block=0, samples=0, bits=0, min_seq=0, seed=7, gscore=-1,
         check=0, sizes=None):
    b = size(batch) + size(heads) + size(kv) + size(nq) + size(nk)
    b += bytes([0 if d == 16 else 1, 0 if dv == 16 else 1])
    b += intf(causal, 0) + bytes([0]) + intf(lse, 0)
    b += intf(method, -1) + intf(score, -2)
    for v in (budget, clusters, iters, sink, window, glob, block, samples):
        b += size(v)
    b += bytes([bits]) + size(min_seq) + seed.to_bytes(8, "little")
    b += bytes([0]) + intf(gscore, -2) + intf(check, 0) + bytes([0])
    return b


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20261129)
    tensor = bytes(rng.randrange(256) for _ in range(512))
    cases = {
        "exact": desc(),
        "exact_causal_gqa": desc(heads=4, kv=2, nq=20, nk=33, causal=1, d=32, dv=16),
        "exact_nq_gt_nk_causal": desc(nq=40, nk=10, causal=1),
        "hyper": desc(method=1, score=3, block=8, samples=8, min_seq=8, nk=48, nq=48),
        "hyper_causal": desc(method=1, score=3, causal=1, block=8, samples=8, min_seq=8),
        "prescore_kmeans": desc(method=2, score=0, budget=24, nk=60, block=8, samples=8,
                                min_seq=8, iters=4),
        "prescore_leverage": desc(method=2, score=1, budget=20, nk=40, d=32, min_seq=8),
        "prescore_norm_sink_window": desc(method=2, score=2, budget=10, sink=3, window=5,
                                          nk=50, min_seq=8),
        "prescore_global": desc(method=2, score=0, budget=30, glob=4, nk=60, min_seq=8),
        "hyper_global_norm": desc(method=1, score=3, glob=3, gscore=2, nk=40, min_seq=8),
        "prescore_budget_over_n": desc(method=2, score=2, budget=79, nk=12, min_seq=8),
        "check_finite": desc(check=1, batch=2, heads=2, kv=1),
        "invalid_gqa": desc(heads=3, kv=2),
        "invalid_budget0": desc(method=2, budget=0),
    }
    for name, b in cases.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b + tensor)
    # Edge sizes: n_k on the 2^30 limit, batch at SIZE_MAX.
    with open(os.path.join(out, "edge_sizes"), "wb") as f:
        f.write(size(1) + size(1) + size(1) + size(8) + edge(2) + bytes([0, 0]) + tensor[:64])
    with open(os.path.join(out, "edge_batch"), "wb") as f:
        f.write(edge(11) + tensor[:64])


if __name__ == "__main__":
    main()
