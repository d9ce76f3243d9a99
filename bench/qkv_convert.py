#!/usr/bin/env python3
"""Converts recorded Q/K/V between PSQKV (docs/DATA.md) and NumPy .npy.

  qkv_convert.py IN.psqkv OUT.npy   one [layers, heads, 3, n, d] array, the
                                    file's storage type (float16 or float32)
  qkv_convert.py IN.npy OUT.psqkv   layers and heads numbered from 0; the
                                    provenance names the source file

prescore-bench --data reads both. The .npy side holds no layer/head ids or
provenance (a PSQKV file converted to .npy and back has ids 0.. and a new
provenance line); the values round-trip exactly.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_qkv import write_psqkv  # noqa: E402  (one PSQKV writer)
from eval_real import read_psqkv  # noqa: E402  (one PSQKV reader)


def psqkv_to_npy(src, dst):
    f = read_psqkv(src)
    data = f["data"].astype("<f2" if f["dtype"] == "fp16" else "<f4")  # exact: widened on read
    np.save(dst, data, allow_pickle=False)
    return data.shape, f["dtype"]


def npy_to_psqkv(src, dst):
    data = np.load(src, mmap_mode="r", allow_pickle=False)
    if data.ndim != 5 or data.shape[2] != 3:
        raise ValueError("%s: shape %s, expected [layers, heads, 3, n, d]" % (src, data.shape))
    if data.dtype not in (np.dtype("<f2"), np.dtype("<f4")):
        raise ValueError("%s: dtype %s, expected float16 or float32" % (src, data.dtype))
    if not np.all(np.isfinite(data)):
        raise ValueError("%s: holds NaN or infinite values" % src)
    dtype = "fp16" if data.dtype == np.dtype("<f2") else "fp32"
    prov = "converted from %s by bench/qkv_convert.py" % os.path.basename(src)
    write_psqkv(dst, np.ascontiguousarray(data), range(data.shape[0]), range(data.shape[1]),
                prov, dtype)
    return data.shape, dtype


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1:]
    kinds = (os.path.splitext(src)[1].lower(), os.path.splitext(dst)[1].lower())
    if kinds == (".psqkv", ".npy"):
        shape, dtype = psqkv_to_npy(src, dst)
    elif kinds == (".npy", ".psqkv"):
        shape, dtype = npy_to_psqkv(src, dst)
    else:
        sys.exit("qkv_convert.py: converts .psqkv to .npy or .npy to .psqkv (got %s -> %s)"
                 % kinds)
    print("%s -> %s: %s %s" % (src, dst, "x".join(map(str, shape)), dtype))


if __name__ == "__main__":
    main()
