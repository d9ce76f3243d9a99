"""Hugging Face transformers adapter: register() makes libprescore-cl an
attention implementation, so that

    import prescore.hf
    prescore.hf.register(method="prescore", keep_ratio=0.25, min_seq_len=1024)
    model.set_attn_implementation("prescore")  # or attn_implementation= at load

runs every attention layer of the model through prescore.attention().

Masks: transformers builds them for "prescore" as it does for "sdpa"
(boolean, True = attend, None where the model's causality says it all).
Supported per batch row: every key, causal (bottom-right), a contiguous
range of keys (padding on either side), and causal with left padding; other
masks raise NotImplementedError rather than being approximated silently.
Dropout during training is refused the same way."""
import numpy as np

from . import _api


def _allowed(mask, n_q, n_k):
    """The mask as a boolean numpy array [batch, heads|1, n_q, n_k]."""
    import torch
    if mask.dim() == 2:  # a [batch, n_k] padding mask (1 = token)
        mask = mask[:, None, None, :].expand(-1, 1, n_q, -1).bool()
    elif mask.dtype != torch.bool:
        mask = mask == 0  # additive: 0 attends, a large negative masks
    return np.broadcast_to(mask.cpu().numpy(), (mask.shape[0], mask.shape[1], n_q, n_k))


def _row_plan(rows, n_q, n_k):
    """(key range lo, hi, causal) that reproduces one batch row's mask
    [n_q, n_k], or None."""
    keys = np.flatnonzero(rows.any(axis=0))
    if keys.size == 0:
        return None
    lo, hi = int(keys[0]), int(keys[-1]) + 1
    in_range = np.zeros(n_k, bool)
    in_range[lo:hi] = True
    if (rows == in_range[None, :]).all():
        return lo, hi, False
    tri = np.tril(np.ones((n_q, n_k), bool), n_k - n_q)
    if hi == n_k and (rows == (tri & in_range[None, :])).all():
        return lo, hi, True
    return None


def _mask_plans(mask, n_q, n_k, batch):
    allowed = _allowed(mask, n_q, n_k)
    plans = []
    for b in range(batch):
        head_rows = allowed[b if allowed.shape[0] > 1 else 0]
        if not (head_rows == head_rows[0:1]).all():
            raise NotImplementedError("prescore: attention masks that differ between heads "
                                      "are not supported")
        plan = _row_plan(head_rows[0], n_q, n_k)
        if plan is None:
            raise NotImplementedError(
                "prescore: this attention mask is not supported (supported: none, causal, "
                "a contiguous range of keys per sequence, causal with left padding)")
        plans.append(plan)
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
        plans = _mask_plans(attention_mask, n_q, n_k, batch)
        if all(p == (0, n_k, plans[0][2]) for p in plans):
            return _api.attention(query, key, value, causal=plans[0][2], **run), None
        import torch
        outs = [_api.attention(query[b:b + 1], key[b:b + 1, :, lo:hi], value[b:b + 1, :, lo:hi],
                               causal=causal, **run)
                for b, (lo, hi, causal) in enumerate(plans)]
        return torch.cat(outs, dim=0), None

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
