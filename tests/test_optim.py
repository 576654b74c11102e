"""The optimiser matches PyTorch's semantics (L2 weight decay inside Adam/SGD), checked by hand."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmpoint_jax.config_lib import ConfigError
from mmpoint_jax.train import optim


def _reference_torch_adam(p, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch Adam(weight_decay=wd) written out: g += wd * p, bias-corrected moments."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def test_adam_l2_matches_pytorch_semantics():
    cfg = optim.default_optim_config(lr=0.01, weight_decay=0.1)
    sched = ml_collections.ConfigDict(dict(name="constant", warmup_steps=0, final_lr_fraction=0.0))
    tx, _ = optim.make_optimizer(cfg, sched, total_steps=10)
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(5,)).astype(np.float64)
    grads = [rng.normal(size=(5,)) for _ in range(4)]
    params = jnp.asarray(p0, jnp.float32)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
    np.testing.assert_allclose(
        params, _reference_torch_adam(p0, grads, 0.01, 0.1), rtol=1e-5, atol=1e-6
    )


def test_cosine_schedule_ends_at_final_fraction():
    cfg = optim.default_optim_config(lr=0.1)
    sched = optim.default_schedule_config()
    sched.final_lr_fraction = 0.01
    _, lr = optim.make_optimizer(cfg, sched, total_steps=100)
    assert float(lr(0)) == pytest.approx(0.1) and float(lr(100)) == pytest.approx(0.001)
    assert float(lr(50)) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5), rel=1e-5)


def test_unknown_optimizer_names_field():
    cfg = optim.default_optim_config()
    cfg.name = "lamb"
    with pytest.raises(ConfigError, match="optim.name"):
        optim.make_optimizer(cfg, optim.default_schedule_config(), 10)
