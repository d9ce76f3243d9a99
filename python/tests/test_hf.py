"""The transformers adapter (prescore.hf) without a model: the masks it
takes, and its output against torch's scaled_dot_product_attention. Skipped
where torch is not installed (CI's venv has numpy only)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import prescore.hf  # noqa: E402


class Layer(torch.nn.Module):
    is_causal = False


def sdpa(q, k, v, mask=None, causal=False):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    return torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), attn_mask=mask, is_causal=causal).transpose(1, 2)


def run(fn, q, k, v, mask, causal=None):
    layer = Layer()
    out, weights = fn(layer, q, k, v, mask, scaling=None, dropout=0.0, is_causal=causal)
    assert weights is None and out.shape == (q.shape[0], q.shape[2], q.shape[1], v.shape[3])
    return out


def tensors(seed, b=3, h=4, kvh=2, n_q=40, n_k=40, d=32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n_q, d, generator=g), torch.randn(b, kvh, n_k, d, generator=g),
            torch.randn(b, kvh, n_k, d, generator=g))


def close(a, b):
    return (a.double() - b).norm() / b.norm() < 1e-5


def test_no_mask_and_causal():
    fn = prescore.hf.make_attention_function(method="exact")
    q, k, v = tensors(1)
    assert close(run(fn, q, k, v, None, False), sdpa(q, k, v))
    assert close(run(fn, q, k, v, None, True), sdpa(q, k, v, causal=True))


def test_padding_masks():
    """Right padding (encoders), left padding with causality (decoders), a 2-D
    [batch, n_k] mask, additive float masks: each row of the batch on its keys."""
    fn = prescore.hf.make_attention_function(method="exact")
    q, k, v = tensors(2)
    n = 40
    lengths = [40, 25, 31]
    keys = torch.stack([torch.arange(n) < L for L in lengths])  # [b, n_k]
    mask = keys[:, None, None, :].expand(-1, 1, n, -1)
    assert close(run(fn, q, k, v, mask), sdpa(q, k, v, mask))
    assert close(run(fn, q, k, v, keys.long()), sdpa(q, k, v, mask))
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    assert close(run(fn, q, k, v, additive), sdpa(q, k, v, mask))
    starts = [0, 9, 3]
    tri = torch.ones(n, n, dtype=torch.bool).tril()
    left = torch.stack([tri & (torch.arange(n) >= s)[None, :] for s in starts])[:, None]
    # rows before a sequence's start see no key: compare the rows that do
    out, ref = run(fn, q, k, v, left), sdpa(q, k, v, left)
    for b, s in enumerate(starts):
        assert close(out[b, s:], ref[b, s:])


def test_causal_right_padding_and_2d_causal():
    """Decoders evaluated on a right-padded batch: causal within each
    sequence's tokens (a causal and a plain call per sequence); a 2-D
    padding mask on a causal module keeps the causality."""
    fn = prescore.hf.make_attention_function(method="exact")
    q, k, v = tensors(5)
    n = 40
    lengths = [40, 22, 35]
    keys = torch.stack([torch.arange(n) < L for L in lengths])
    tri = torch.ones(n, n, dtype=torch.bool).tril()
    mask = (tri[None] & keys[:, None, :])[:, None]
    assert close(run(fn, q, k, v, mask), sdpa(q, k, v, mask))
    layer = Layer()
    layer.is_causal = True
    out, _ = fn(layer, q, k, v, keys.long(), scaling=None)
    assert close(out, sdpa(q, k, v, mask))


def test_segments_of_a_mask():
    """How a sequence's mask becomes calls: (rows, keys, causal)."""
    n = 6
    tri = np.tril(np.ones((n, n), bool))
    assert prescore.hf._segments(np.ones((n, n), bool)) == [(0, n, 0, n, False)]
    assert prescore.hf._segments(tri) == [(0, n, 0, n, True)]
    right = tri & (np.arange(n) < 4)[None, :]  # causal, right padding after 4
    assert prescore.hf._segments(right) == [(0, 4, 0, 4, True), (4, n, 0, 4, False)]
    left = tri & (np.arange(n) >= 2)[None, :]  # causal, left padding before 2
    assert prescore.hf._segments(left) == [(2, n, 2, n, True)]
    hole = np.ones((n, n), bool)
    hole[:, 3] = False
    assert prescore.hf._segments(hole) is None


def test_unsupported_masks_refused():
    fn = prescore.hf.make_attention_function(method="exact")
    q, k, v = tensors(3)
    holes = torch.ones(3, 1, 40, 40, dtype=torch.bool)
    holes[:, :, :, 7] = False  # a hole inside the key range
    with pytest.raises(NotImplementedError):
        run(fn, q, k, v, holes)
    per_head = torch.ones(3, 4, 40, 40, dtype=torch.bool)
    per_head[:, 1, :, 30:] = False
    with pytest.raises(NotImplementedError):
        run(fn, q, k, v, per_head)
    layer = Layer()
    layer.training = True
    with pytest.raises(NotImplementedError):
        fn(layer, q, k, v, None, dropout=0.1)


def test_approximate_method_through_the_adapter():
    fn = prescore.hf.make_attention_function(method="prescore", keep_ratio=0.5, min_seq_len=64,
                                             block=64, samples=32)
    q, k, v = tensors(4, b=1, n_q=300, n_k=300)
    out = run(fn, q, k, v, None, False)
    err = ((out.double() - sdpa(q, k, v)).norm() / sdpa(q, k, v).norm()).item()
    assert 1e-3 < err < 2.0 and torch.isfinite(out).all()
