"""The Python face of libprescore-cl: devices, contexts, plans, attention
on NumPy arrays and CPU torch tensors, key scoring and selection, the
decode cache, and library errors as exceptions (docs/PYTHON.md)."""
import collections
import ctypes
import threading

import numpy as np

from . import _arrays, _ffi

# Descriptor fields a caller may set by name beyond the shapes; names of
# methods, scores and selections are accepted as strings.
OPTION_FIELDS = ("causal", "scale", "method", "score", "budget", "keep_ratio", "clusters",
                 "kmeans_iters", "sink", "window", "global_keys", "block", "samples",
                 "lsh_bits", "min_seq_len", "seed", "leverage_lambda", "global_score",
                 "check_finite", "selection", "sketch_queries", "error_probes",
                 "error_tolerance", "rescore_growth")
_NAMED = {"method": _ffi.METHOD, "score": _ffi.SCORE, "global_score": _ffi.SCORE,
          "selection": _ffi.SELECTION}


class Error(RuntimeError):
    """A library call returned a status other than PS_OK. `status` is the
    ps_status code, `status_name` its description, `message` the library's
    own message (what was wrong, and where)."""

    def __init__(self, call, status, message):
        self.call, self.status, self.message = call, status, message
        self.status_name = _ffi.text(_ffi.lib().ps_status_string(status))
        super().__init__("%s: %s (%d): %s" % (call, self.status_name, status, message))


def _check(call, status, message_fn):
    if status != _ffi.PS_OK:
        raise Error(call, status, message_fn())


def version():
    """The library's version string."""
    return _ffi.text(_ffi.lib().ps_version_string())


def kernel_source_hash():
    """SHA-256 of the kernel sources built into the library."""
    return _ffi.text(_ffi.lib().ps_kernel_source_hash())


def _info_dict(info):
    out = {}
    for name, _ in _ffi.DeviceInfo._fields_:
        value = getattr(info, name)
        out[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
    out["type"] = _ffi.DEVICE_TYPE.get(info.type, "other")
    out["selector"] = "%d:%d" % (info.platform_index, info.device_index)
    return out


def devices():
    """Every OpenCL device, as dicts (name, vendor, type, limits, and
    "selector", the "P:D" string that picks it for Context(device=...))."""
    lib = _ffi.lib()
    count = ctypes.c_size_t()
    _check("ps_device_list", lib.ps_device_list(None, 0, ctypes.byref(count)),
           lambda: _ffi.text(lib.ps_context_last_error(None)))
    infos = (_ffi.DeviceInfo * max(1, count.value))()
    _check("ps_device_list", lib.ps_device_list(infos, count.value, ctypes.byref(count)),
           lambda: _ffi.text(lib.ps_context_last_error(None)))
    return [_info_dict(infos[i]) for i in range(min(count.value, len(infos)))]


def make_desc(**fields):
    """A ps_attention_desc from ps_attention_desc_default with @fields set
    (shapes, options; names accepted for method, score, global_score and
    selection). Unknown fields raise TypeError."""
    desc = _ffi.AttentionDesc()
    _ffi.lib().ps_attention_desc_default(ctypes.byref(desc))
    for name, value in fields.items():
        if value is None:
            continue
        if name in _NAMED and isinstance(value, str):
            if value not in _NAMED[name]:
                raise ValueError("%s must be one of %s, not %r" % (name, sorted(_NAMED[name]),
                                                                   value))
            value = _NAMED[name][value]
        if name in ("causal", "check_finite", "want_lse"):
            value = int(bool(value))
        if not hasattr(desc, name) or name == "reserved":
            raise TypeError("unknown attention option %r" % name)
        setattr(desc, name, value)
    return desc


class Context:
    """A ps_context: one OpenCL device with the kernels compiled for it.

    device: a selector as PRESCORE_DEVICE takes ("gpu", "cpu", "P:D" or a
    part of the device's name); None: PRESCORE_DEVICE, else the first GPU,
    else the first device. Plans made through attention() are kept (up to
    `plan_cache` of them) so repeated shapes do not allocate again."""

    def __init__(self, device=None, *, shape="auto", verbose=False, profiling=False,
                 cache_dir=None, plan_cache=32):
        lib = _ffi.lib()
        opt = _ffi.ContextOptions()
        lib.ps_context_options_default(ctypes.byref(opt))
        # Kept alive with opt: ctypes does not copy the strings.
        self._device = device.encode() if device else None
        self._cache_dir = cache_dir.encode() if cache_dir else None
        opt.device, opt.cache_dir = self._device, self._cache_dir
        if shape not in _ffi.SHAPE:
            raise ValueError("shape must be one of %s, not %r" % (sorted(_ffi.SHAPE), shape))
        opt.shape = _ffi.SHAPE[shape]
        opt.verbose, opt.profiling = int(verbose), int(profiling)
        self.handle = ctypes.c_void_p()
        _check("ps_context_create", lib.ps_context_create(ctypes.byref(self.handle),
                                                           ctypes.byref(opt)),
               lambda: _ffi.text(lib.ps_context_last_error(None)))
        self._plans = collections.OrderedDict()
        self._plan_cache = plan_cache
        # One lock for the context and everything made from it: its plans and
        # caches share one queue, and a driver may not take several host
        # threads on one queue (rusticl: docs/DEVICES.md).
        self._lock = threading.RLock()

    def device_info(self):
        """The context's device, as devices() describes it."""
        info = _ffi.DeviceInfo()
        _check("ps_context_device_info",
               _ffi.lib().ps_context_device_info(self.handle, ctypes.byref(info)),
               self.last_error)
        return _info_dict(info)

    def kernel_shape(self):
        """"cpu" or "gpu": the kernel shape the context compiled."""
        code = _ffi.lib().ps_context_kernel_shape(self.handle)
        return {v: k for k, v in _ffi.SHAPE.items()}.get(code, str(code))

    def last_error(self):
        return _ffi.text(_ffi.lib().ps_context_last_error(self.handle))

    def plan(self, desc):
        """A Plan for @desc (a make_desc() result), kept in this context's
        plan cache: the same descriptor gives the same plan."""
        key = bytes(desc)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
            plan = Plan(self, desc)
            self._plans[key] = plan
            # An evicted plan is only dropped: a thread may hold it still, and
            # it is destroyed when the last reference goes.
            while len(self._plans) > self._plan_cache:
                self._plans.popitem(last=False)
        return plan

    def close(self):
        """Destroys the cached plans and the context. A plan the caller made
        and still holds keeps the context alive (Error, the context kept)."""
        with self._lock:
            for plan in self._plans.values():
                plan.close()
            self._plans.clear()
        if self.handle:
            _check("ps_context_destroy", _ffi.lib().ps_context_destroy(self.handle),
                   self.last_error)
            self.handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass  # plans still open keep the library's context alive


_DEFAULT = {}
_DEFAULT_LOCK = threading.Lock()


def default_context(device=None):
    """The context attention() uses when given none: one per selector,
    created on first use and kept for the process."""
    with _DEFAULT_LOCK:
        ctx = _DEFAULT.get(device)
        if ctx is None:
            ctx = _DEFAULT[device] = Context(device)
        return ctx


def _serialised(method):
    """Runs @method under its context's lock: ctypes releases the GIL during
    a call, one plan or cache must not be used by two threads at once
    (docs/API.md "Threads"), and a context's objects share its queue. A
    closed object refuses every call but close()."""
    def locked(self, *args, **kwargs):
        with self._lock:
            if not self.handle and method.__name__ != "close":
                raise ValueError("%s is closed" % type(self).__name__)
            return method(self, *args, **kwargs)
    locked.__name__, locked.__doc__ = method.__name__, method.__doc__
    return locked


class _Handle:
    """A library object released by `_destroy` (the C function's name) on
    close(), at the end of a with block, or when collected; its calls are
    serialised by `_lock`."""
    _destroy = None
    handle = None

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._lock = threading.RLock()
        return obj

    @_serialised
    def close(self):
        if self.handle:
            getattr(_ffi.lib(), self._destroy)(self.handle)
            self.handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Plan(_Handle):
    """A ps_plan: one descriptor's shapes, method and device memory."""
    _destroy = "ps_plan_destroy"

    def __init__(self, context, desc):
        self.context, self.desc = context, desc
        self._lock = context._lock
        self.handle = ctypes.c_void_p()
        _check("ps_plan_create", _ffi.lib().ps_plan_create(context.handle, ctypes.byref(desc),
                                                            ctypes.byref(self.handle)),
               context.last_error)

    def path(self):
        """The method a call runs: "exact" below min_seq_len, else the plan's."""
        code = _ffi.lib().ps_plan_path(self.handle)
        return {v: k for k, v in _ffi.METHOD.items()}.get(code, str(code))

    def device_bytes(self):
        return _ffi.lib().ps_plan_device_bytes(self.handle)

    def last_time_ms(self):
        """Milliseconds the last call took on the device."""
        return _ffi.lib().ps_plan_last_time_ms(self.handle)

    def last_error(self):
        return _ffi.text(_ffi.lib().ps_plan_last_error(self.handle))

    @_serialised
    def _run(self, q, k, v, o, lse):
        """ps_attention_host on Converted inputs and outputs laid out as
        this plan's descriptor says: attention() builds both from the same
        arrays as the descriptor, so they are not checked again here."""
        lse_ptr = lse.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if lse is not None else None
        _check("ps_attention_host",
               _ffi.lib().ps_attention_host(self.handle, q.pointer(), k.pointer(), v.pointer(),
                                            o.pointer(), lse_ptr),
               self.last_error)

    @_serialised
    def error_estimate(self):
        """The last call's error estimate per query head (flat batch * heads):
        (relative output error, mean |LSE error|, recomputed flags); the plan
        needs error_probes > 0."""
        n = self.desc.batch * self.desc.heads
        rel, lse = np.zeros(n, np.float32), np.zeros(n, np.float32)
        rec = np.zeros(n, np.intc)
        fp = ctypes.POINTER(ctypes.c_float)
        _check("ps_plan_error_estimate",
               _ffi.lib().ps_plan_error_estimate(self.handle, rel.ctypes.data_as(fp),
                                                 lse.ctypes.data_as(fp),
                                                 rec.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                                                 n),
               self.last_error)
        return rel, lse, rec.astype(bool)

    @_serialised
    def score_keys(self, k):
        """Scores of every key (a method-"prescore" plan): [batch, kv_heads, n_k]."""
        kc = _arrays.convert(k, "k", dtype=_dtype_name(self.desc.k_layout.dtype))
        _expect_strides(kc, self.desc.k_layout, "k")
        d = self.desc
        scores = np.empty((d.batch, d.kv_heads, d.n_k), np.float32)
        _check("ps_score_keys_host",
               _ffi.lib().ps_score_keys_host(self.handle, kc.pointer(),
                                             scores.ctypes.data_as(ctypes.POINTER(ctypes.c_float))),
               self.last_error)
        return scores

    @_serialised
    def select_keys(self, scores, weights=False):
        """The kept keys for @scores [batch, kv_heads, n_k]: (indices [batch,
        kv_heads, capacity] ascending, slots past a head's count hold n_k;
        counts [batch, kv_heads]; with @weights also the kept keys'
        log-weights)."""
        d = self.desc
        scores = np.ascontiguousarray(scores, np.float32)
        if scores.shape != (d.batch, d.kv_heads, d.n_k):
            raise ValueError("scores has shape %s, the plan needs %s" %
                             (scores.shape, (d.batch, d.kv_heads, d.n_k)))
        cap = _ffi.lib().ps_plan_selected_capacity(self.handle)
        idx = np.zeros((d.batch, d.kv_heads, max(cap, 1)), np.uint32)
        cnt = np.zeros((d.batch, d.kv_heads), np.uint32)
        wt = np.zeros(idx.shape, np.float32) if weights else None
        up, fp = ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_float)
        _check("ps_select_keys_host",
               _ffi.lib().ps_select_keys_host(self.handle, scores.ctypes.data_as(fp),
                                              idx.ctypes.data_as(up), cnt.ctypes.data_as(up),
                                              wt.ctypes.data_as(fp) if weights else None),
               self.last_error)
        return (idx, cnt, wt) if weights else (idx, cnt)



def _dtype_name(code):
    return {v: k for k, v in _ffi.DTYPE.items()}[code]


def _expect_strides(conv, layout, name):
    want = tuple(layout.stride)
    if any(want) and conv.strides != want:
        raise ValueError("%s has strides %s, the plan was made for %s" % (name, conv.strides,
                                                                       want))


def _check_options(options):
    for name in options:
        if name not in OPTION_FIELDS:
            raise TypeError("unknown attention option %r (options: %s)" %
                            (name, ", ".join(OPTION_FIELDS)))


def _shapes(qc, kc, vc):
    (bq, h, n_q, d), (bk, kvh, n_k, dk), (bv, kvh_v, n_v, d_v) = qc.shape, kc.shape, vc.shape
    if not bq == bk == bv:
        raise ValueError("q, k and v have batch sizes %d, %d and %d" % (bq, bk, bv))
    if kvh != kvh_v or n_k != n_v:
        raise ValueError("k and v differ in heads or tokens: %s and %s" % (kc.shape, vc.shape))
    if dk != d:
        raise ValueError("q and k have head dims %d and %d" % (d, dk))
    return dict(batch=bq, heads=h, kv_heads=kvh, n_q=n_q, n_k=n_k, d=d, d_v=d_v)


def attention(q, k, v, *, method="exact", causal=False, scale=None, budget=None,
              keep_ratio=None, layout="bhtd", out_layout=None, return_lse=False,
              return_estimate=False, context=None, device=None, reference=False, **options):
    """Attention of q over k and v on the device.

    q [batch, heads, n_q, d], k [batch, kv_heads, n_k, d], v [batch,
    kv_heads, n_k, d_v] (layout "bhtd"), or with tokens before heads
    (layout "bthd"); 3-D arrays have no batch axis. NumPy arrays or CPU
    torch tensors, float32 or float16 (bfloat16 tensors are widened); the
    output has q's type and element type, in `out_layout` (default: layout).
    method: "exact", "hyper" or "prescore"; budget / keep_ratio: PRESCORE's
    kept keys; other options are the descriptor's fields by name (block,
    samples, score, selection, global_keys, min_seq_len, seed, ...,
    docs/API.md). return_lse: also the natural-log log-sum-exp per query row,
    float32 [batch, heads, n_q]. return_estimate: also the call's error
    estimate (needs error_probes > 0): a dict of rel_error, lse_error and
    recomputed, each [batch, heads]. reference: run the library's plain-C
    twin on the host instead of the device (same choices, double precision).
    Returns o, or a tuple (o, lse if asked, estimate if asked)."""
    _check_options(options)
    qc = _arrays.convert(q, "q", layout)
    kc = _arrays.convert(k, "k", layout)
    vc = _arrays.convert(v, "v", layout)
    shapes = _shapes(qc, kc, vc)
    out_layout = out_layout or layout
    oc = _arrays.empty((shapes["batch"], shapes["heads"], shapes["n_q"], shapes["d_v"]),
                       out_layout if out_layout in _arrays.LAYOUTS else layout, qc.dtype)
    if out_layout not in _arrays.LAYOUTS:
        raise ValueError("out_layout must be one of %s" % sorted(_arrays.LAYOUTS))
    desc = make_desc(method=method, causal=causal, scale=scale, budget=budget,
                     keep_ratio=keep_ratio, want_lse=return_lse, **shapes, **options)
    desc.q_layout, desc.k_layout, desc.v_layout = qc.layout(), kc.layout(), vc.layout()
    desc.o_layout = oc.layout()
    lse = np.empty((shapes["batch"], shapes["heads"], shapes["n_q"]), np.float32) \
        if return_lse else None
    if return_estimate and (reference or not desc.error_probes):
        raise ValueError("return_estimate needs error_probes > 0, on the device")
    if reference:
        lib = _ffi.lib()
        msg = ctypes.create_string_buffer(512)
        lse_ptr = lse.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if lse is not None else None
        _check("ps_ref_attention",
               lib.ps_ref_attention(ctypes.byref(desc), qc.pointer(), kc.pointer(), vc.pointer(),
                                    oc.pointer(), lse_ptr),
               lambda: _validation_message(desc, msg))
    else:
        ctx = context or default_context(device)
        plan = ctx.plan(desc)
        with plan._lock:  # the estimate of this call, not another thread's
            plan._run(qc, kc, vc, oc, lse)
            if return_estimate:
                shape = (shapes["batch"], shapes["heads"])
                estimate = dict(zip(("rel_error", "lse_error", "recomputed"),
                                    (a.reshape(shape) for a in plan.error_estimate())))
    squeeze = q.ndim == 3
    out = [_arrays.give_back(oc.array, qc, squeeze)]
    if return_lse:
        out.append(_arrays.give_back(lse, qc, squeeze, same_dtype=False))
    if return_estimate:
        out.append(estimate)
    return out[0] if len(out) == 1 else tuple(out)


def _validation_message(desc, buf):
    st = _ffi.lib().ps_attention_desc_validate(ctypes.byref(desc), buf, len(buf))
    return _ffi.text(buf.value) if st != _ffi.PS_OK else "the reference refused the call"


def _key_desc(kc, score, budget, keep_ratio, selection, options):
    _check_options(options)
    b, kvh, n_k, d = kc.shape
    options = dict(options)
    options.setdefault("min_seq_len", 1)  # the stages run whatever the length
    options.setdefault("sketch_queries", 0)  # no queries here to sketch
    desc = make_desc(batch=b, heads=kvh, kv_heads=kvh, n_q=1, n_k=n_k, d=d, d_v=d,
                     method="prescore", score=score, budget=budget, keep_ratio=keep_ratio,
                     selection=selection, **options)
    desc.k_layout = kc.layout()
    return desc


def score_keys(k, *, score="kmeans", context=None, device=None, layout="bhtd",
               reference=False, **options):
    """Query-independent scores of every key (higher: more worth keeping):
    float32 [batch, kv_heads, n_k] (no batch axis for a 3-D k). score:
    "kmeans", "leverage", "norm" or "none"; options: clusters, kmeans_iters,
    leverage_lambda, seed. reference: the host twin."""
    kc = _arrays.convert(k, "k", layout)
    desc = _key_desc(kc, score, None, None, "top", options)
    if reference:
        scores = np.empty((desc.batch, desc.kv_heads, desc.n_k), np.float32)
        msg = ctypes.create_string_buffer(512)
        _check("ps_ref_score_keys",
               _ffi.lib().ps_ref_score_keys(ctypes.byref(desc), kc.pointer(),
                                            scores.ctypes.data_as(ctypes.POINTER(ctypes.c_float))),
               lambda: _validation_message(desc, msg))
    else:
        plan = (context or default_context(device)).plan(desc)
        scores = plan.score_keys(_lib_order(kc, layout))
    return _arrays.give_back(scores, kc, k.ndim == 3, same_dtype=False)


def select_keys(k, budget=None, *, keep_ratio=None, score="kmeans", selection="top",
                weights=False, context=None, device=None, layout="bhtd", **options):
    """Scores k and keeps `budget` keys (or `keep_ratio` of them) per KV
    head: (indices [batch, kv_heads, capacity], ascending, n_k past a head's
    count; counts [batch, kv_heads]; with weights=True the kept keys'
    log-weights, docs/SELECT.md). selection: "top", "weighted" or
    "stratified"; options: sink, window, global_keys, clusters, seed, ..."""
    kc = _arrays.convert(k, "k", layout)
    desc = _key_desc(kc, score, budget, keep_ratio, selection, options)
    plan = (context or default_context(device)).plan(desc)
    out = plan.select_keys(plan.score_keys(_lib_order(kc, layout)), weights)
    return tuple(a[0] for a in out) if k.ndim == 3 else out


def _lib_order(conv, layout):
    """A library-order ([batch, head, token, dim]) view of a Converted array
    (both standard layouts swap their own axes back)."""
    return conv.array.transpose(_arrays.LAYOUTS[layout])


class KVCache(_Handle):
    """A growing key/value cache for decoding (ps_kv_cache): append() keys
    and values as they are produced, decode() a few queries against all of
    them. method "prescore" keeps the first `sink` keys, the last `window`
    and `budget` (or `keep_ratio` of the length) keys chosen by score, and
    attends those exactly; "exact" attends every key.

    Arrays are dense [batch, heads, tokens, dim] in `dtype` ("float32" or
    "float16"); others are converted (copied)."""
    _destroy = "ps_kv_cache_destroy"

    def __init__(self, *, heads, d, capacity, kv_heads=None, d_v=None, batch=1, max_queries=1,
                 method="prescore", dtype="float32", context=None, device=None, **options):
        _check_options(options)
        if dtype not in _ffi.DTYPE:
            raise ValueError("dtype must be float32 or float16, not %r" % dtype)
        self.dtype = dtype
        desc = make_desc(batch=batch, heads=heads, kv_heads=kv_heads or heads, n_q=max_queries,
                         n_k=capacity, d=d, d_v=d_v or d, method=method, **options)
        for lay in (desc.q_layout, desc.k_layout, desc.v_layout, desc.o_layout):
            lay.dtype = _ffi.DTYPE[dtype]
        self.desc = desc
        self.context = context or default_context(device)
        self._lock = self.context._lock
        self.handle = ctypes.c_void_p()
        _check("ps_kv_cache_create",
               _ffi.lib().ps_kv_cache_create(self.context.handle, ctypes.byref(desc),
                                             ctypes.byref(self.handle)),
               self.context.last_error)

    def last_error(self):
        return _ffi.text(_ffi.lib().ps_kv_cache_last_error(self.handle))

    def _dense(self, x, name, heads, dim):
        c = _arrays.convert(x, name, "bhtd", self.dtype)
        b, h, n, dd = c.shape
        if (b, h, dd) != (self.desc.batch, heads, dim):
            raise ValueError("%s has shape %s in [batch, heads, tokens, dim], the cache needs "
                             "[%d, %d, tokens, %d]" % (name, c.shape, self.desc.batch, heads, dim))
        c.array = np.ascontiguousarray(c.array)
        return c, n

    @_serialised
    def append(self, k, v):
        """Appends the rows of k [batch, kv_heads, n_new, d] and v [batch,
        kv_heads, n_new, d_v] to every KV head."""
        d = self.desc
        kc, n_k = self._dense(k, "k", d.kv_heads, d.d)
        vc, n_v = self._dense(v, "v", d.kv_heads, d.d_v)
        if n_k != n_v:
            raise ValueError("k has %d rows, v %d" % (n_k, n_v))
        _check("ps_kv_cache_append_host",
               _ffi.lib().ps_kv_cache_append_host(self.handle, kc.pointer(), vc.pointer(), n_k),
               self.last_error)

    @_serialised
    def decode(self, q, *, exact=False, return_lse=False):
        """Attention of q [batch, heads, n_q, d], the last n_q positions of
        the sequence, against the cache (query i sees keys up to position
        length - n_q + i): O [batch, heads, n_q, d_v] (and LSE). exact: every
        cached key, whatever the cache's method."""
        d = self.desc
        qc, n_q = self._dense(q, "q", d.heads, d.d)
        o = np.empty((d.batch, d.heads, n_q, d.d_v),
                     np.float32 if self.dtype == "float32" else np.float16)
        lse = np.empty((d.batch, d.heads, n_q), np.float32) if return_lse else None
        _check("ps_kv_cache_decode_host",
               _ffi.lib().ps_kv_cache_decode_host(
                   self.handle, qc.pointer(), n_q, o.ctypes.data,
                   lse.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if return_lse else None,
                   _ffi.DECODE["exact" if exact else "cache"]),
               self.last_error)
        o = _arrays.give_back(o, qc, False)
        return (o, lse) if return_lse else o

    @_serialised
    def rescore(self):
        """Scores every cached key afresh and selects the kept set again."""
        _check("ps_kv_cache_rescore", _ffi.lib().ps_kv_cache_rescore(self.handle),
               self.last_error)

    @_serialised
    def reset(self):
        """Empties the cache (keeps its memory)."""
        _check("ps_kv_cache_reset", _ffi.lib().ps_kv_cache_reset(self.handle), self.last_error)

    @_serialised
    def info(self):
        """length, capacity, kept, kept_capacity, scored_length, rescores,
        device_bytes."""
        info = _ffi.KvCacheInfo()
        _check("ps_kv_cache_get_info",
               _ffi.lib().ps_kv_cache_get_info(self.handle, ctypes.byref(info)),
               self.last_error)
        return {name: getattr(info, name) for name, _ in _ffi.KvCacheInfo._fields_
                if name != "reserved"}

    @_serialised
    def kept(self):
        """(positions [batch * kv_heads, kept_capacity] ascending, UINT32_MAX
        past a head's count; counts [batch * kv_heads]) of the kept keys
        (sinks and window not listed)."""
        heads = self.desc.batch * self.desc.kv_heads
        cap = max(1, self.info()["kept_capacity"])
        pos = np.zeros((heads, cap), np.uint32)
        cnt = np.zeros(heads, np.uint32)
        up = ctypes.POINTER(ctypes.c_uint32)
        _check("ps_kv_cache_kept",
               _ffi.lib().ps_kv_cache_kept(self.handle, pos.ctypes.data_as(up),
                                           cnt.ctypes.data_as(up)),
               self.last_error)
        return pos, cnt

