"""The C interface of libprescore-cl as ctypes sees it: finding and loading
the shared library, the public structs mirrored field by field, the enum
values, and the signatures of every function the module calls.

The mirrors are checked, not assumed: check_layout() compiles a probe
against the C headers (offsetof/sizeof of every field) and compares
(python/tests/test_module.py runs it)."""
import ctypes
import ctypes.util
import os
import subprocess
import sys
import tempfile

PS_OK = 0
METHOD = {"exact": 0, "hyper": 1, "prescore": 2}
SCORE = {"auto": -1, "kmeans": 0, "leverage": 1, "norm": 2, "none": 3}
SELECTION = {"auto": -1, "top": 0, "weighted": 1, "stratified": 2}
SHAPE = {"auto": 0, "cpu": 1, "gpu": 2}
DTYPE = {"float32": 0, "float16": 1}
DECODE = {"cache": 0, "exact": 1}
DEVICE_TYPE = {0: "other", 1: "cpu", 2: "gpu", 3: "accelerator"}
INFO_STRING_MAX = 256

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


class DeviceInfo(ctypes.Structure):
    """ps_device_info."""
    _fields_ = [
        ("platform_index", ctypes.c_uint),
        ("device_index", ctypes.c_uint),
        ("type", c_enum),
        ("name", ctypes.c_char * INFO_STRING_MAX),
        ("vendor", ctypes.c_char * INFO_STRING_MAX),
        ("platform_name", ctypes.c_char * INFO_STRING_MAX),
        ("driver_version", ctypes.c_char * INFO_STRING_MAX),
        ("device_version", ctypes.c_char * INFO_STRING_MAX),
        ("opencl_c_version", ctypes.c_char * INFO_STRING_MAX),
        ("compute_units", ctypes.c_uint),
        ("max_work_group_size", c_size),
        ("local_mem_size", ctypes.c_uint64),
        ("local_mem_is_global", ctypes.c_int),
        ("global_mem_size", ctypes.c_uint64),
        ("max_mem_alloc_size", ctypes.c_uint64),
        ("preferred_vector_width_float", ctypes.c_uint),
        ("has_fp64", ctypes.c_int),
        ("has_fp16", ctypes.c_int),
    ]


class KvCacheInfo(ctypes.Structure):
    """ps_kv_cache_info."""
    _fields_ = [
        ("length", c_size),
        ("capacity", c_size),
        ("kept", c_size),
        ("kept_capacity", c_size),
        ("scored_length", c_size),
        ("rescores", c_size),
        ("device_bytes", c_size),
        ("reserved", c_size * 4),
    ]


STRUCTS = {"ps_context_options": ContextOptions, "ps_tensor_layout": TensorLayout,
           "ps_attention_desc": AttentionDesc, "ps_device_info": DeviceInfo,
           "ps_kv_cache_info": KvCacheInfo}

_LIB = None
_LIB_PATH = None


def _library_names():
    if sys.platform == "darwin":
        return ["libprescore-cl.dylib"]
    if sys.platform == "win32":
        return ["prescore-cl.dll", "libprescore-cl.dll"]
    return ["libprescore-cl.so"]


def library_candidates():
    """Where the library is looked for, in order: PRESCORE_LIB (a path),
    the copy installed inside this package (pip install), then the
    system's linker path."""
    env = os.environ.get("PRESCORE_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.join(here, name) for name in _library_names()]
    found = ctypes.util.find_library("prescore-cl")
    if found:
        out.append(found)
    return out


def _declare(lib):
    vp, st = ctypes.c_void_p, ctypes.c_int
    fp = ctypes.POINTER(ctypes.c_float)
    up = ctypes.POINTER(ctypes.c_uint32)
    ip = ctypes.POINTER(ctypes.c_int)
    desc_p = ctypes.POINTER(AttentionDesc)
    sigs = {
        "ps_status_string": (ctypes.c_char_p, [st]),
        "ps_version_string": (ctypes.c_char_p, []),
        "ps_kernel_source_hash": (ctypes.c_char_p, []),
        "ps_device_list": (st, [ctypes.POINTER(DeviceInfo), c_size, ctypes.POINTER(c_size)]),
        "ps_context_options_default": (None, [ctypes.POINTER(ContextOptions)]),
        "ps_context_create": (st, [ctypes.POINTER(vp), ctypes.POINTER(ContextOptions)]),
        "ps_context_destroy": (st, [vp]),
        "ps_context_last_error": (ctypes.c_char_p, [vp]),
        "ps_context_device_info": (st, [vp, ctypes.POINTER(DeviceInfo)]),
        "ps_context_kernel_shape": (c_enum, [vp]),
        "ps_attention_desc_default": (None, [desc_p]),
        "ps_attention_desc_validate": (st, [desc_p, ctypes.c_char_p, c_size]),
        "ps_plan_create": (st, [vp, desc_p, ctypes.POINTER(vp)]),
        "ps_plan_destroy": (st, [vp]),
        "ps_plan_path": (c_enum, [vp]),
        "ps_plan_last_error": (ctypes.c_char_p, [vp]),
        "ps_plan_device_bytes": (c_size, [vp]),
        "ps_plan_last_time_ms": (ctypes.c_double, [vp]),
        "ps_plan_selected_capacity": (c_size, [vp]),
        "ps_plan_error_estimate": (st, [vp, fp, fp, ip, c_size]),
        "ps_attention_host": (st, [vp, vp, vp, vp, vp, fp]),
        "ps_score_keys_host": (st, [vp, vp, fp]),
        "ps_select_keys_host": (st, [vp, fp, up, up, fp]),
        "ps_ref_attention": (st, [desc_p, vp, vp, vp, vp, fp]),
        "ps_ref_score_keys": (st, [desc_p, vp, fp]),
        "ps_kv_cache_create": (st, [vp, desc_p, ctypes.POINTER(vp)]),
        "ps_kv_cache_destroy": (st, [vp]),
        "ps_kv_cache_append_host": (st, [vp, vp, vp, c_size]),
        "ps_kv_cache_rescore": (st, [vp]),
        "ps_kv_cache_reset": (st, [vp]),
        "ps_kv_cache_decode_host": (st, [vp, vp, c_size, vp, fp, c_enum]),
        "ps_kv_cache_get_info": (st, [vp, ctypes.POINTER(KvCacheInfo)]),
        "ps_kv_cache_kept": (st, [vp, up, up]),
        "ps_kv_cache_last_error": (ctypes.c_char_p, [vp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def lib():
    """The loaded library (loaded and declared on first use)."""
    global _LIB, _LIB_PATH
    if _LIB is not None:
        return _LIB
    tried = []
    for path in library_candidates():
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        _declare(handle)
        _LIB, _LIB_PATH = handle, path
        return handle
    raise OSError("libprescore-cl not found; tried: " + "; ".join(tried or ["nothing"]) +
                  ". Set PRESCORE_LIB to the library's path.")


def library_path():
    """The path the library was loaded from (loads it)."""
    lib()
    return _LIB_PATH


def text(raw):
    return raw.decode(errors="replace") if raw else ""


PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "prescore/prescore.h"
#define F(T, f) printf("%s %s %zu %zu\n", #T, #f, offsetof(T, f), sizeof(((T *)0)->f));
int main(void)
{
@SIZES@
@FIELDS@
    return 0;
}
"""


def check_layout(include_dirs, cc="cc"):
    """Compiles a probe against the headers in @include_dirs and compares
    every field's offset and size, and every struct's size, with the ctypes
    mirrors. Returns a list of mismatches (empty: all match)."""
    sizes, fields = [], []
    for cname, cls in STRUCTS.items():
        sizes.append('    printf("%s sizeof %%zu 0\\n", sizeof(%s));' % (cname, cname))
        fields += ["    F(%s, %s)" % (cname, f) for f, _ in cls._fields_]
    src = PROBE.replace("@SIZES@", "\n".join(sizes)).replace("@FIELDS@", "\n".join(fields))
    with tempfile.TemporaryDirectory() as tmp:
        c, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(c, "w") as f:
            f.write(src)
        res = subprocess.run([cc, "-std=c99", *["-I" + d for d in include_dirs], c, "-o", exe],
                             capture_output=True, text=True)
        if res.returncode != 0:
            return ["probe did not compile: " + res.stderr[-2000:]]
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    bad = []
    for line in out.splitlines():
        cname, field, off, size = line.split()
        cls = STRUCTS[cname]
        if field == "sizeof":
            got = (ctypes.sizeof(cls), 0)
        else:
            member = getattr(cls, field)
            got = (member.offset, member.size)
        if got != (int(off), int(size)):
            bad.append("%s.%s: C offset/size %s/%s, ctypes %d/%d" % (cname, field, off, size,
                                                                     *got))
    return bad
