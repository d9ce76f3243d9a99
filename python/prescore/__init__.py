"""prescore: near-linear-time attention on any OpenCL device (libprescore-cl).

    import prescore
    o = prescore.attention(q, k, v)                       # exact
    o = prescore.attention(q, k, v, method="prescore", keep_ratio=0.25,
                           min_seq_len=1024)

NumPy arrays and CPU torch tensors, float32 or float16; docs/PYTHON.md.
prescore.hf.register() makes "prescore" a transformers attention
implementation."""
from ._api import (Context, Error, KVCache, Plan, attention, default_context, devices,
                   kernel_source_hash, make_desc, score_keys, select_keys, version)
from ._ffi import library_path

__all__ = ["Context", "Error", "KVCache", "Plan", "attention", "default_context", "devices",
           "kernel_source_hash", "library_path", "make_desc", "score_keys", "select_keys",
           "version"]
