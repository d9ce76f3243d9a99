"""The prescore module against NumPy and against the library's plain-C twin:
every method, both dtypes, both layouts, strided inputs, key scoring and
selection, the decode cache, the error estimate, and errors raised with the
library's message. Needs numpy and an OpenCL device (PoCL in CI)."""
import os
import re
import shutil

import numpy as np
import pytest

import prescore
from conftest import ROOT, exact_reference, rel_error

F16_TOL = 3e-3  # fp16 inputs and output: rounding of O (half ulp ~ 5e-4) and of Q, K, V


def qkv(rng, b=2, h=4, kvh=2, n_q=200, n_k=200, d=32, d_v=32, dtype=np.float32):
    q = rng.standard_normal((b, h, n_q, d)).astype(dtype)
    k = rng.standard_normal((b, kvh, n_k, d)).astype(dtype)
    v = rng.standard_normal((b, kvh, n_k, d_v)).astype(dtype)
    return q, k, v


def test_version_and_devices():
    with open(os.path.join(ROOT, "include", "prescore", "version.h")) as f:
        parts = dict(re.findall(r"#define PS_VERSION_(MAJOR|MINOR|PATCH) (\d+)", f.read()))
    assert prescore.version() == "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
    assert len(prescore.kernel_source_hash()) == 64
    devs = prescore.devices()
    assert devs, "no OpenCL device"
    for d in devs:
        assert d["name"] and d["type"] in ("cpu", "gpu", "accelerator", "other")
        assert d["local_mem_size"] > 0 and d["max_work_group_size"] > 0
    ctx = prescore.Context(devs[0]["selector"])
    assert ctx.device_info()["name"] == devs[0]["name"]
    assert ctx.kernel_shape() in ("cpu", "gpu")
    ctx.close()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the layout probe")
def test_struct_mirrors_match_the_headers():
    from prescore import _ffi
    assert _ffi.check_layout([os.path.join(ROOT, "include")]) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
@pytest.mark.parametrize("causal", [False, True])
def test_exact_against_numpy(rng, dtype, layout, causal):
    q, k, v = qkv(rng, n_q=150 if causal else 200, dtype=dtype)
    ref, ref_lse = exact_reference(q, k, v, causal)
    args = (q, k, v) if layout == "bhtd" else tuple(a.transpose(0, 2, 1, 3) for a in (q, k, v))
    o, lse = prescore.attention(*args, causal=causal, layout=layout, return_lse=True)
    assert o.dtype == dtype and lse.dtype == np.float32
    if layout == "bthd":
        o = o.transpose(0, 2, 1, 3)
    assert o.shape == ref.shape
    tol = 1e-5 if dtype == np.float32 else F16_TOL
    assert rel_error(o, ref) < tol
    assert np.abs(lse - ref_lse).max() < (1e-4 if dtype == np.float32 else 1e-2)


def test_three_dimensional_and_out_layout(rng):
    q, k, v = qkv(rng, b=1, h=2, kvh=2, n_q=70, n_k=90)
    ref, _ = exact_reference(q, k, v)
    o = prescore.attention(q[0], k[0], v[0])
    assert o.shape == (2, 70, 32) and rel_error(o, ref[0]) < 1e-5
    o = prescore.attention(q, k, v, out_layout="bthd")
    assert o.shape == (1, 70, 2, 32) and rel_error(o.transpose(0, 2, 1, 3), ref) < 1e-5


def test_strided_inputs_read_in_place(rng):
    """Views (a slice of a fused QKV array, a reversed axis) give the dense result."""
    fused = rng.standard_normal((2, 150, 3, 4, 32)).astype(np.float32)  # [b, t, qkv, h, d]
    q, k, v = (fused[:, :, i] for i in range(3))  # strided [b, t, h, d] views
    dense = [np.ascontiguousarray(a) for a in (q, k, v)]
    want = prescore.attention(*dense, layout="bthd")
    from prescore import _arrays
    conv = _arrays.convert(q, "q", "bthd")
    assert np.shares_memory(conv.array, fused) and conv.strides == (150 * 3 * 4 * 32, 32,
                                                                   3 * 4 * 32, 1)
    assert np.array_equal(prescore.attention(q, k, v, layout="bthd"), want)
    rev = [a[:, ::-1] for a in (q, k, v)]  # negative strides: copied first
    want_rev = prescore.attention(*[np.ascontiguousarray(a) for a in rev], layout="bthd")
    assert np.array_equal(prescore.attention(*rev, layout="bthd"), want_rev)


APPROX = [
    dict(method="hyper", block=64, samples=32),
    dict(method="hyper", block=64, samples=32, causal=True),
    dict(method="prescore", keep_ratio=0.5, block=64, samples=32, selection="top"),
    dict(method="prescore", keep_ratio=0.5, block=64, samples=32),  # automatic selection
    dict(method="prescore", budget=200, score="leverage", block=64, samples=32,
         selection="top"),
    dict(method="prescore", budget=150, score="norm", block=64, samples=32, causal=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("opts", APPROX, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_approximate_methods_match_the_twin(rng, dtype, opts):
    """The device run makes the twin's discrete choices: equal up to rounding."""
    q, k, v = qkv(rng, n_q=400, n_k=400, dtype=dtype)
    o, lse = prescore.attention(q, k, v, min_seq_len=64, seed=7, return_lse=True, **opts)
    o_ref, lse_ref = prescore.attention(q, k, v, min_seq_len=64, seed=7, return_lse=True,
                                        reference=True, **opts)
    tol = 1e-4 if dtype == np.float32 else F16_TOL
    assert rel_error(o, o_ref) < tol
    assert np.abs(lse - lse_ref).max() < 1e-3
    exact, _ = exact_reference(q, k, v, opts.get("causal", False))
    assert rel_error(o, exact) > 1e-3, "the approximation ran exact attention"
    assert np.isfinite(o.astype(np.float32)).all()


def test_hyper_recovers_exact_with_one_block(rng):
    q, k, v = qkv(rng, n_q=256, n_k=256)
    ref, _ = exact_reference(q, k, v)
    o = prescore.attention(q, k, v, method="hyper", block=256, global_keys=0, min_seq_len=1)
    assert rel_error(o, ref) < 1e-5


def test_plan_reports_path_and_caches(rng):
    q, k, v = qkv(rng)
    with prescore.Context() as ctx:
        desc = prescore.make_desc(batch=2, heads=4, kv_heads=2, n_q=200, n_k=200, d=32, d_v=32,
                                  method="hyper")
        assert ctx.plan(desc) is ctx.plan(desc)
        assert ctx.plan(desc).path() == "exact"  # below min_seq_len
        desc.min_seq_len = 64
        assert ctx.plan(desc).path() == "hyper"
        prescore.attention(q, k, v, context=ctx)


def test_error_estimate(rng):
    q, k, v = qkv(rng, n_q=512, n_k=512)
    o, est = prescore.attention(q, k, v, method="hyper", block=64, samples=32, min_seq_len=64,
                                error_probes=32, return_estimate=True)
    exact, _ = exact_reference(q, k, v)
    assert est["rel_error"].shape == (2, 4)
    assert (est["rel_error"] > 0).all() and not est["recomputed"].any()
    # The estimate is of the size of the true per-head error.
    true = [rel_error(o[b, h], exact[b, h]) for b in range(2) for h in range(4)]
    ratio = est["rel_error"].ravel() / np.array(true)
    assert (ratio > 0.3).all() and (ratio < 3).all()
    o, est = prescore.attention(q, k, v, method="hyper", block=64, samples=32, min_seq_len=64,
                                error_probes=32, error_tolerance=1e-6, return_estimate=True)
    assert est["recomputed"].all() and rel_error(o, exact) < 1e-5


@pytest.mark.parametrize("score", ["kmeans", "leverage", "norm"])
def test_scores_match_the_twin(rng, score):
    k = rng.standard_normal((2, 3, 500, 32)).astype(np.float32)
    s = prescore.score_keys(k, score=score, seed=3)
    s_ref = prescore.score_keys(k, score=score, seed=3, reference=True)
    assert s.shape == (2, 3, 500)
    # leverage: a float32 solve on the device, double on the host (test_score_device's bound)
    rtol = 2e-3 if score == "leverage" else 1e-4
    assert np.abs(s - s_ref).max() <= rtol * np.abs(s_ref).max()
    if score == "norm":
        np.testing.assert_allclose(s, (k.astype(np.float64) ** 2).sum(-1), rtol=1e-5)


def test_top_selection_keeps_the_top_scored(rng):
    k = rng.standard_normal((1, 2, 300, 32)).astype(np.float32)
    k[0, 0, 17] *= 10  # one clear outlier
    idx, cnt = prescore.select_keys(k, 40, score="norm")
    scores = prescore.score_keys(k, score="norm")
    assert (cnt == 40).all()
    for h in range(2):
        top = np.sort(np.argsort(-scores[0, h], kind="stable")[:40])
        assert np.array_equal(idx[0, h, :40], top)
    assert 17 in idx[0, 0]
    idx3, cnt3 = prescore.select_keys(k[0], 40, score="norm")
    assert np.array_equal(idx3, idx[0]) and np.array_equal(cnt3, cnt[0])


@pytest.mark.parametrize("selection", ["weighted", "stratified"])
def test_weighted_selection_stands_for_every_key(rng, selection):
    """Each kept key's weight is the number of keys it stands for: they sum to n_k
    (stratified: clusters too small for a draw of their own stand for none)."""
    k = rng.standard_normal((1, 2, 600, 32)).astype(np.float32)
    idx, cnt, w = prescore.select_keys(k, 100, selection=selection, weights=True, seed=5)
    assert (cnt == 100).all()
    for h in range(2):
        total = np.exp(w[0, h, :100].astype(np.float64)).sum()
        if selection == "weighted":
            assert np.isclose(total, 600, rtol=1e-4)
        else:
            assert 0.98 * 600 <= total <= 600 * (1 + 1e-4)
        assert (np.diff(idx[0, h, :100].astype(np.int64)) > 0).all()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_kv_cache_decode(rng, dtype):
    n, h, kvh, d = 300, 4, 2, 32
    q, k, v = qkv(rng, b=1, h=h, kvh=kvh, n_q=n, n_k=n, d=d, d_v=d)
    npd = np.float32 if dtype == "float32" else np.float16
    q, k, v = (a.astype(npd) for a in (q, k, v))
    with prescore.KVCache(heads=h, kv_heads=kvh, d=d, capacity=n + 10, max_queries=4,
                          method="prescore", budget=64, sink=4, window=16,
                          dtype=dtype) as cache:
        cache.append(k[:, :, :200], v[:, :, :200])
        cache.append(k[:, :, 200:], v[:, :, 200:])
        info = cache.info()
        assert info["length"] == n and info["kept"] == 64
        pos, cnt = cache.kept()
        assert (cnt == 64).all() and ((pos[:, :64] >= 4) & (pos[:, :64] < n - 16)).all()
        ref, _ = exact_reference(q, k, v, causal=True)
        o = cache.decode(q[:, :, -4:], exact=True)
        tol = 1e-5 if dtype == "float32" else F16_TOL
        assert o.dtype == npd and rel_error(o, ref[:, :, -4:]) < tol
        approx = cache.decode(q[:, :, -4:])
        assert np.isfinite(approx.astype(np.float32)).all()
        with pytest.raises(prescore.Error) as e:
            cache.append(k[:, :, :20], v[:, :, :20])  # past the capacity
        assert e.value.status == -1 and "capacity" in e.value.message
        assert cache.info()["length"] == n  # left as it was
        cache.reset()
        assert cache.info()["length"] == 0


def test_errors_carry_the_library_message(rng):
    q, k, v = qkv(rng, d=24, d_v=24)
    with pytest.raises(prescore.Error) as e:
        prescore.attention(q, k, v)
    assert e.value.status == -2 and e.value.status_name == "unsupported configuration"
    assert "d = 24" in str(e.value)
    with pytest.raises(prescore.Error):  # a head dim of one: the library's refusal
        prescore.attention(q[..., :1], k[..., :1], v[..., :1])
    q, k, v = qkv(rng)
    with pytest.raises(prescore.Error) as e:
        prescore.attention(q, k, v, method="prescore", budget=10, keep_ratio=0.5)
    assert "budget" in e.value.message
    with pytest.raises(ValueError):
        prescore.attention(q, k[:, :, :100], v, method="exact")
    with pytest.raises(ValueError):
        prescore.attention(q, k, v, method="fast")
    with pytest.raises(TypeError):
        prescore.attention(q, k, v, blocks=64)
    with pytest.raises(TypeError):
        prescore.attention(q.astype(np.int32), k, v)
    with pytest.raises(ValueError):
        prescore.Context(shape="fpga")
    with pytest.raises(prescore.Error) as e:
        prescore.Context("no-such-device-name")
    assert e.value.status == -4


def test_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    q, k, v = qkv(rng)
    ref, ref_lse = exact_reference(q, k, v)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    o, lse = prescore.attention(tq, tk, tv, return_lse=True)
    assert isinstance(o, torch.Tensor) and o.dtype == torch.float32
    assert rel_error(o.numpy(), ref) < 1e-5 and np.abs(lse.numpy() - ref_lse).max() < 1e-4
    # [b, t, h, d] storage seen through a transpose, as transformers passes it
    tq2 = tq.transpose(1, 2).contiguous().transpose(1, 2)
    assert rel_error(prescore.attention(tq2, tk, tv).numpy(), ref) < 1e-5
    o16 = prescore.attention(tq.half(), tk.half(), tv.half())
    assert o16.dtype == torch.float16 and rel_error(o16.float().numpy(), ref) < F16_TOL
    obf = prescore.attention(tq.bfloat16(), tk.bfloat16(), tv.bfloat16())
    assert obf.dtype == torch.bfloat16 and rel_error(obf.float().numpy(), ref) < 2e-2
    with pytest.raises(TypeError):
        prescore.attention(tq.double(), tk, tv)


def test_threads_share_a_context(rng):
    """Threads calling attention() on inputs of one shape share the context's
    cached plan (and its device buffers); the module serialises calls on a
    context, so every thread gets its own inputs' result."""
    import threading
    inputs = [qkv(rng, n_q=256, n_k=256) for _ in range(4)]
    want = [prescore.attention(*x) for x in inputs]
    bad, errors = [], []

    def work(i):
        try:
            for _ in range(10):
                if not np.array_equal(prescore.attention(*inputs[i]), want[i]):
                    bad.append(i)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not bad


def test_plan_cache_eviction_under_threads(rng):
    """A plan evicted from a small cache while another thread holds it is
    not destroyed under that thread; threads on one context's queue (rusticl,
    docs/DEVICES.md defect 6) get their own results."""
    import threading
    shapes = [qkv(rng, b=1, h=2, kvh=2, n_q=n, n_k=n) for n in (64, 80, 96, 112, 128)]
    want = [prescore.attention(*x) for x in shapes]
    errors, bad = [], []
    with prescore.Context(plan_cache=2) as ctx:
        def work(t):
            try:
                for i in range(20):
                    j = (i + t) % len(shapes)
                    if not np.array_equal(prescore.attention(*shapes[j], context=ctx), want[j]):
                        bad.append(j)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and not bad, errors[:3]
