"""Hugging Face transformers adapter: register() makes libprescore-cl an
attention implementation, so that

    import prescore.hf
    prescore.hf.register(method="prescore", keep_ratio=0.25, min_seq_len=1024)
    model.set_attn_implementation("prescore")  # or attn_implementation= at load

runs every attention layer of the model through prescore.attention().

Masks: transformers builds them for "prescore" as it does for "sdpa"
(boolean, True = attend, None where the model's causality says it all).
Each sequence of the batch runs as few calls as reproduce its mask: every
query row must see one contiguous range of keys, and consecutive rows the
same range (a plain call) or one more key each (a causal call), which
covers no mask, causal, padding on either side, and causal with left or
right padding. Other masks (holes, masks that differ between heads) raise
NotImplementedError rather than being approximated silently; so does
dropout during training. Rows that see no key get zeros."""
import numpy as np

from . import _api


MAX_SEGMENTS = 16  # calls per sequence before a mask counts as unsupported


def _allowed(mask, n_q, n_k, causal):
    """The mask as a boolean numpy array [batch, heads|1, n_q, n_k]. A 2-D
    [batch, n_k] padding mask (1 = token) of a causal module also gets the
    causal (bottom-right) triangle."""
    import torch
    if mask.dim() == 2:
        keys = mask.bool().cpu().numpy()[:, None, None, :]
        allowed = np.broadcast_to(keys, (keys.shape[0], 1, n_q, n_k))
        if causal:
            allowed = allowed & np.tril(np.ones((n_q, n_k), bool), n_k - n_q)
        return allowed
    if mask.dtype != torch.bool:
        mask = mask == 0  # additive: 0 attends, a large negative masks
    return np.broadcast_to(mask.cpu().numpy(), (mask.shape[0], mask.shape[1], n_q, n_k))


def _segments(rows):
    """Calls that reproduce one sequence's mask [n_q, n_k]: a list of (query
    rows q0:q1, keys k0:k1, causal), where every row's keys are one
    contiguous range and consecutive rows share it (a plain call) or extend
    it by one key each (a causal call, bottom-right aligned). Rows that see
    no key are left out (their output stays zero). None: not expressible."""
    n_q, n_k = rows.shape
    has = rows.any(axis=1)
    lo = np.where(has, rows.argmax(axis=1), 0)
    hi = np.where(has, n_k - rows[:, ::-1].argmax(axis=1), 0)
    if (rows.sum(axis=1) != hi - lo).any():
        return None  # a hole in some row's keys
    out = []
    i = 0
    while i < n_q:
        if not has[i]:
            i += 1
            continue
        j, causal = i + 1, None
        while j < n_q and has[j] and lo[j] == lo[i]:
            step = hi[j] - hi[j - 1]
            kind = {0: False, 1: True}.get(int(step))
            if kind is None or (causal is not None and kind != causal):
                break
            causal = kind
            j += 1
        out.append((i, j, int(lo[i]), int(hi[j - 1]), bool(causal)))
        if len(out) > MAX_SEGMENTS:
            return None
        i = j
    return out


def _mask_segments(mask, n_q, n_k, batch, causal):
    allowed = _allowed(mask, n_q, n_k, causal)
    plans = []
    for b in range(batch):
        head_rows = allowed[b if allowed.shape[0] > 1 else 0]
        if not (head_rows == head_rows[0:1]).all():
            raise NotImplementedError("prescore: attention masks that differ between heads "
                                      "are not supported")
        segs = _segments(np.ascontiguousarray(head_rows[0]))
        if segs is None:
            raise NotImplementedError(
                "prescore: this attention mask is not supported (each query row must see one "
                "contiguous range of keys, in at most %d runs of rows per sequence)"
                % MAX_SEGMENTS)
        plans.append(segs)
    return plans


def make_attention_function(context=None, device=None, **options):
    """The function transformers calls for each attention layer:
    (module, query, key, value, attention_mask, scaling, dropout, ...) ->
    (output [batch, n_q, heads, d_v], None). @options go to
    prescore.attention (method, keep_ratio, min_seq_len, block, ...)."""

    def prescore_attention(module, query, key, value, attention_mask, dropout=0.0,
                           scaling=None, is_causal=None, **kwargs):
        if dropout and getattr(module, "training", False):
            raise NotImplementedError("prescore: attention dropout (training) is not supported")
        batch, _, n_q, _ = query.shape
        n_k = key.shape[2]
        if is_causal is None:
            is_causal = bool(getattr(module, "is_causal", False)) and n_q > 1
        run = dict(options, scale=scaling, context=context, device=device,
                   out_layout="bthd")
        if attention_mask is None:
            return _api.attention(query, key, value, causal=is_causal, **run), None
        plans = _mask_segments(attention_mask, n_q, n_k, batch, is_causal)
        whole = [(0, n_q, 0, n_k, c) for c in (False, True)]
        if all(p == [whole[0]] for p in plans) or all(p == [whole[1]] for p in plans):
            return _api.attention(query, key, value, causal=plans[0][0][4], **run), None
        import torch
        out = torch.zeros(batch, n_q, query.shape[1], value.shape[3], dtype=query.dtype)
        for b, segs in enumerate(plans):
            for q0, q1, k0, k1, causal in segs:
                out[b, q0:q1] = _api.attention(query[b, :, q0:q1], key[b, :, k0:k1],
                                               value[b, :, k0:k1], causal=causal, **run)
        return out, None

    return prescore_attention


def register(name="prescore", context=None, device=None, **options):
    """Registers the library as transformers attention implementation
    @name (and its masks as sdpa's). Returns the attention function."""
    import transformers
    fn = make_attention_function(context=context, device=device, **options)
    interface = getattr(transformers, "AttentionInterface", None)
    if interface is None:
        raise RuntimeError("transformers %s has no AttentionInterface (needs >= 4.48)" %
                           transformers.__version__)
    interface.register(name, fn)
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        AttentionMaskInterface.register(name, sdpa_mask)
    except ImportError:
        pass  # older transformers: the model passes its own 4-D or 2-D masks
    return fn
