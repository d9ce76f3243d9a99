#!/usr/bin/env python3
"""Thin ctypes binding to libprescore-cl (include/prescore/prescore.h).

Covers what an application needs to run attention from Python on host
arrays: ps_context_create / ps_context_destroy, ps_plan_create /
ps_plan_destroy, ps_attention_host, ps_plan_path, ps_status_string,
ps_context_last_error, ps_plan_last_error, and the two descriptor structs, mirrored field by
field. The library is found through PRESCORE_LIB (a path), else
build/lib/libprescore-cl.so under the repository.

The struct layouts are checked, not assumed: `python3 bench/prescore_ctypes.py`
compiles a small C probe against the header (cc, offsetof/sizeof of every
field) and compares it with the ctypes mirror, then runs one exact attention
through the library against numpy. Arrays are numpy float32, C-contiguous,
row-major [batch, heads, tokens, dim] as the header says.
"""
import ctypes
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PS_OK = 0
METHOD = {"exact": 0, "hyper": 1, "prescore": 2}
SCORE = {"auto": -1, "kmeans": 0, "leverage": 1, "norm": 2, "none": 3}
SELECTION = {"auto": -1, "top": 0, "weighted": 1, "stratified": 2}
SHAPE = {"auto": 0, "cpu": 1, "gpu": 2}
c_size = ctypes.c_size_t
c_enum = ctypes.c_int  # C enums with values in int range (ps_score has -1)


class ContextOptions(ctypes.Structure):
    """ps_context_options."""
    _fields_ = [
        ("device", ctypes.c_char_p),
        ("shape", c_enum),
        ("disable_cache", ctypes.c_int),
        ("cache_dir", ctypes.c_char_p),
        ("build_options", ctypes.c_char_p),
        ("verbose", ctypes.c_int),
        ("profiling", ctypes.c_int),
        ("reserved", ctypes.c_uint32 * 8),
    ]


class TensorLayout(ctypes.Structure):
    """ps_tensor_layout."""
    _fields_ = [
        ("dtype", c_enum),
        ("offset", c_size),
        ("stride", c_size * 4),
    ]


class AttentionDesc(ctypes.Structure):
    """ps_attention_desc."""
    _fields_ = [
        ("batch", c_size),
        ("heads", c_size),
        ("kv_heads", c_size),
        ("n_q", c_size),
        ("n_k", c_size),
        ("d", c_size),
        ("d_v", c_size),
        ("causal", ctypes.c_int),
        ("scale", ctypes.c_float),
        ("want_lse", ctypes.c_int),
        ("method", c_enum),
        ("score", c_enum),
        ("budget", c_size),
        ("clusters", c_size),
        ("kmeans_iters", c_size),
        ("sink", c_size),
        ("window", c_size),
        ("global_keys", c_size),
        ("block", c_size),
        ("samples", c_size),
        ("lsh_bits", ctypes.c_uint),
        ("min_seq_len", c_size),
        ("seed", ctypes.c_uint64),
        ("leverage_lambda", ctypes.c_float),
        ("global_score", c_enum),
        ("check_finite", ctypes.c_int),
        ("q_layout", TensorLayout),
        ("k_layout", TensorLayout),
        ("v_layout", TensorLayout),
        ("o_layout", TensorLayout),
        ("cu_seqlens_q", ctypes.POINTER(ctypes.c_uint32)),
        ("cu_seqlens_k", ctypes.POINTER(ctypes.c_uint32)),
        ("keep_ratio", ctypes.c_float),
        ("rescore_growth", ctypes.c_float),
        ("selection", ctypes.c_int),
        ("sketch_queries", ctypes.c_uint32),
        ("error_probes", ctypes.c_uint32),
        ("error_tolerance", ctypes.c_float),
        ("reserved", ctypes.c_uint32 * 10),
    ]


class PrescoreError(RuntimeError):
    """A call returned a status other than PS_OK."""

    def __init__(self, what, status, detail):
        super().__init__("%s: %s (%d): %s" % (what, _lib().ps_status_string(status).decode(),
                                             status, detail))
        self.status = status


_LIB = None


def library_path():
    return os.environ.get("PRESCORE_LIB") or os.path.join(ROOT, "build", "lib",
                                                         "libprescore-cl.so")


def _lib():
    """Loads the library once and declares the signatures used here."""
    global _LIB
    if _LIB is not None:
        return _LIB
    lib = ctypes.CDLL(library_path())
    vp, st = ctypes.c_void_p, ctypes.c_int
    fp = ctypes.POINTER(ctypes.c_float)
    sigs = {
        "ps_status_string": (ctypes.c_char_p, [st]),
        "ps_version_string": (ctypes.c_char_p, []),
        "ps_context_options_default": (None, [ctypes.POINTER(ContextOptions)]),
        "ps_context_create": (st, [ctypes.POINTER(vp), ctypes.POINTER(ContextOptions)]),
        "ps_context_destroy": (ctypes.c_int, [vp]),
        "ps_context_last_error": (ctypes.c_char_p, [vp]),
        "ps_attention_desc_default": (None, [ctypes.POINTER(AttentionDesc)]),
        "ps_plan_create": (st, [vp, ctypes.POINTER(AttentionDesc), ctypes.POINTER(vp)]),
        "ps_plan_destroy": (ctypes.c_int, [vp]),
        "ps_plan_path": (c_enum, [vp]),
        "ps_plan_last_error": (ctypes.c_char_p, [vp]),
        "ps_attention_host": (st, [vp, fp, fp, fp, fp, fp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _LIB = lib
    return lib


def version():
    return _lib().ps_version_string().decode()


def desc_default(**fields):
    """A ps_attention_desc from ps_attention_desc_default, with `fields` set;
    method/score/selection accept names ("prescore", "kmeans", "stratified", ...)."""
    d = AttentionDesc()
    _lib().ps_attention_desc_default(ctypes.byref(d))
    for k, v in fields.items():
        if k == "method" and isinstance(v, str):
            v = METHOD[v]
        elif k in ("score", "global_score") and isinstance(v, str):
            v = SCORE[v]
        elif k == "selection" and isinstance(v, str):
            v = SELECTION[v]
        if not hasattr(d, k):
            raise AttributeError("ps_attention_desc has no field %r" % k)
        setattr(d, k, v)
    return d


class Context:
    """ps_context on a device (selector as PRESCORE_DEVICE; None: default)."""

    def __init__(self, device=None, shape="auto", verbose=False, profiling=False):
        lib = _lib()
        opt = ContextOptions()
        lib.ps_context_options_default(ctypes.byref(opt))
        self._device = device.encode() if device else None  # kept alive with opt
        opt.device = self._device
        opt.shape = SHAPE[shape]
        opt.verbose = int(verbose)
        opt.profiling = int(profiling)
        self.handle = ctypes.c_void_p()
        st = lib.ps_context_create(ctypes.byref(self.handle), ctypes.byref(opt))
        if st != PS_OK:
            raise PrescoreError("ps_context_create", st,
                                lib.ps_context_last_error(None).decode(errors="replace"))

    def last_error(self):
        return _lib().ps_context_last_error(self.handle).decode(errors="replace")

    def close(self):
        """Destroys the context; refused (PrescoreError, the context kept)
        while plans made from it are still open."""
        if self.handle:
            st = _lib().ps_context_destroy(self.handle)
            if st != PS_OK:
                raise PrescoreError("ps_context_destroy", st, self.last_error())
            self.handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except PrescoreError:
            pass  # plans still open: they keep the context alive until they go


class Plan:
    """ps_plan for one descriptor; attention() runs ps_attention_host."""

    def __init__(self, ctx, desc):
        self.ctx, self.desc = ctx, desc
        self.handle = ctypes.c_void_p()
        st = _lib().ps_plan_create(ctx.handle, ctypes.byref(desc), ctypes.byref(self.handle))
        if st != PS_OK:
            raise PrescoreError("ps_plan_create", st, ctx.last_error())

    def path(self):
        """The method a call runs ('exact' below min_seq_len)."""
        code = _lib().ps_plan_path(self.handle)
        return {v: k for k, v in METHOD.items()}.get(code, str(code))

    def attention(self, q, k, v, want_lse=None):
        """O (and LSE when the plan wants it) for numpy float32 q, k, v of the
        plan's shapes: q [batch, heads, n_q, d], k [batch, kv_heads, n_k, d],
        v [batch, kv_heads, n_k, d_v]."""
        d = self.desc
        shapes = {"q": (q, (d.batch, d.heads, d.n_q, d.d)),
                  "k": (k, (d.batch, d.kv_heads, d.n_k, d.d)),
                  "v": (v, (d.batch, d.kv_heads, d.n_k, d.d_v))}
        arrs = {}
        for name, (a, shape) in shapes.items():
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.size != int(np.prod(shape)):
                raise ValueError("%s has %d elements, the plan needs %s" % (name, a.size, shape))
            arrs[name] = a
        o = np.empty((d.batch, d.heads, d.n_q, d.d_v), dtype=np.float32)
        lse = np.empty((d.batch, d.heads, d.n_q), dtype=np.float32) if d.want_lse else None
        fp = ctypes.POINTER(ctypes.c_float)
        ptr = (lambda a: a.ctypes.data_as(fp) if a is not None else None)
        st = _lib().ps_attention_host(self.handle, ptr(arrs["q"]), ptr(arrs["k"]),
                                      ptr(arrs["v"]), ptr(o), ptr(lse))
        if st != PS_OK:
            raise PrescoreError("ps_attention_host", st, self.last_error())
        return (o, lse) if d.want_lse else o

    def last_error(self):
        """The message of this plan's last call ("" after a success)."""
        return _lib().ps_plan_last_error(self.handle).decode(errors="replace")

    def close(self):
        if self.handle:
            _lib().ps_plan_destroy(self.handle)
            self.handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "prescore/prescore.h"
#define F(T, f) printf("%s %s %zu %zu\n", #T, #f, offsetof(T, f), sizeof(((T *)0)->f));
int main(void)
{
    printf("ps_context_options sizeof %zu 0\n", sizeof(ps_context_options));
    printf("ps_attention_desc sizeof %zu 0\n", sizeof(ps_attention_desc));
@FIELDS@
    return 0;
}
"""


def check_layout(cc="cc"):
    """Compiles the probe against include/ (and the build's generated
    version.h) and compares every field's offset and size and both struct
    sizes with the ctypes mirror. Returns a list of mismatch strings."""
    lines = []
    for cname, cls in (("ps_context_options", ContextOptions),
                       ("ps_attention_desc", AttentionDesc)):
        for f, _ in cls._fields_:
            lines.append("    F(%s, %s)" % (cname, f))
    src = PROBE.replace("@FIELDS@", "\n".join(lines))
    incs = ["-I" + os.path.join(ROOT, "include")]
    build_inc = os.path.join(os.path.dirname(os.path.dirname(library_path())), "include")
    if os.path.isdir(build_inc):
        incs.append("-I" + build_inc)
    with tempfile.TemporaryDirectory() as tmp:
        c, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(c, "w") as f:
            f.write(src)
        res = subprocess.run([cc, "-std=c99", *incs, c, "-o", exe], capture_output=True,
                             text=True)
        if res.returncode != 0:
            return ["probe did not compile: " + res.stderr[-2000:]]
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    cls_of = {"ps_context_options": ContextOptions, "ps_attention_desc": AttentionDesc}
    bad = []
    for line in out.split("\n"):
        if not line:
            continue
        cname, field, off, size = line.split()
        cls = cls_of[cname]
        if field == "sizeof":
            got = (ctypes.sizeof(cls), 0)
        else:
            desc = getattr(cls, field)
            got = (desc.offset, desc.size)
        if got != (int(off), int(size)):
            bad.append("%s.%s: C offset/size %s/%s, ctypes %d/%d" % (cname, field, off, size,
                                                                     *got))
    return bad


def _self_test():
    bad = check_layout()
    print("layout probe: %s" % ("ok, %d + %d fields match" % (
        len(ContextOptions._fields_), len(AttentionDesc._fields_)) if not bad else bad))
    if bad:
        return 1
    rng = np.random.default_rng(1)
    b, h, n, d = 1, 2, 300, 32
    q, k, v = (rng.standard_normal((b, h, n, d), dtype=np.float32) for _ in range(3))
    with Context() as ctx:
        desc = desc_default(heads=h, kv_heads=h, n_q=n, n_k=n, d=d, d_v=d, want_lse=1)
        with Plan(ctx, desc) as plan:
            o, lse = plan.attention(q, k, v)
        s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) / np.sqrt(d)
        ref = np.einsum("bhij,bhjd->bhid", np.exp(s - s.max(-1, keepdims=True)) /
                        np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True), v)
        rel = np.linalg.norm(o - ref) / np.linalg.norm(ref)
        print("libprescore-cl %s at %s: exact attention vs numpy rel %.2e" % (
            version(), library_path(), rel))
        try:
            Plan(ctx, desc_default(n_q=n, n_k=n, d=33, d_v=33))
            print("a bad descriptor was accepted")
            return 1
        except PrescoreError as e:
            print("bad descriptor refused as expected: %s" % e)
    return 0 if rel < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(_self_test())
