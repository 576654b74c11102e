"""Contrastive losses: hand-computed cases, finite differences, sharded == unsharded."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

from mmpoint_jax import losses

TAU = 0.1
# jitted once here: eager dispatch of every small op costs more than the maths in these tests
nt_xent = jax.jit(losses.nt_xent, static_argnums=2)
info_nce = jax.jit(losses.info_nce, static_argnums=2)


def _normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nt_xent_by_hand(a, b, tau):
    """Loop version of SimCLR's loss: 2B anchors, each against the other 2B - 1 rows."""
    z = _normalise(np.concatenate([a, b]).astype(np.float64))
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        denominator = sum(math.exp(z[i] @ z[j] / tau) for j in others)
        total += -math.log(math.exp(z[i] @ z[positive] / tau) / denominator)
    return total / (2 * n)


def _info_nce_by_hand(anchors, candidates, tau):
    za, zc = _normalise(anchors.astype(np.float64)), _normalise(candidates.astype(np.float64))
    total = 0.0
    for i in range(len(za)):
        scores = [math.exp(za[i] @ zc[j] / tau) for j in range(len(zc))]
        total += -math.log(scores[i] / sum(scores))
    return total / len(za)


def _total_loss(outputs, cfg):
    return jax.jit(lambda o: losses.total_loss(o, cfg))(outputs)


def _outputs(rng, batch=16, dims=(4, 6)):
    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "intra1": normal(batch, 8),
        "intra2": normal(batch, 8),
        "point_view_embeddings": tuple(normal(batch, d) for d in dims),
        "image_view_embeddings": tuple(normal(batch, d) for d in dims),
    }


def test_nt_xent_and_info_nce_match_hand_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    np.testing.assert_allclose(nt_xent(a, b, TAU), _nt_xent_by_hand(a, b, TAU), rtol=1e-5)
    np.testing.assert_allclose(info_nce(a, b, TAU), _info_nce_by_hand(a, b, TAU), rtol=1e-5)
    np.testing.assert_allclose(info_nce(b, a, TAU), _info_nce_by_hand(b, a, TAU), rtol=1e-5)


def test_known_answer_for_orthogonal_aligned_embeddings():
    """a_i = b_i = e_i: the positive scores 1/tau, every negative scores 0."""
    batch, tau = 4, 0.5
    eye = np.eye(batch, 6)
    expected_nt = math.log(math.exp(1 / tau) + 2 * batch - 2) - 1 / tau
    expected_nce = math.log(math.exp(1 / tau) + batch - 1) - 1 / tau
    np.testing.assert_allclose(nt_xent(eye, 3 * eye, tau), expected_nt, rtol=1e-5)
    np.testing.assert_allclose(info_nce(eye, 2 * eye, tau), expected_nce, rtol=1e-5)
    # a zero row must not produce NaN, in value or gradient (normalisation eps as F.normalize)
    zero_row = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    assert np.isfinite(nt_xent(zero_row, np.ones((2, 3)), TAU))
    grad = jax.grad(lambda a: losses.nt_xent(a, jnp.ones((2, 3)), TAU))(zero_row)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("fn", ["nt_xent", "info_nce"])
def test_gradients_match_finite_differences(fn):
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        a = jnp.asarray(rng.normal(size=(3, 4)), jnp.float64)
        b = jnp.asarray(rng.normal(size=(3, 4)), jnp.float64)
        loss = jax.jit(lambda x: getattr(losses, fn)(x, b, 0.5))
        grad = np.asarray(jax.grad(loss)(a))
        eps = 1e-6
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(*a.shape):
            step = np.zeros(a.shape)
            step[idx] = eps
            numeric[idx] = (loss(a + step) - loss(a - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_total_loss_terms_weights_and_metrics():
    out = _outputs(np.random.default_rng(2))
    cfg = losses.default_loss_config("mmpoint")
    cfg.w_intra, cfg.w_inter = 0.5, 2.0
    total, metrics = _total_loss(out, cfg)
    a1, a2 = np.asarray(out["intra1"]), np.asarray(out["intra2"])
    intra = _nt_xent_by_hand(a1, a2, TAU)
    per_view = [
        _info_nce_by_hand(np.asarray(p), np.asarray(i), TAU)
        + _info_nce_by_hand(np.asarray(i), np.asarray(p), TAU)
        for p, i in zip(out["point_view_embeddings"], out["image_view_embeddings"], strict=True)
    ]
    np.testing.assert_allclose(metrics["loss/intra"], intra, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss/inter"], sum(per_view), rtol=1e-5)
    np.testing.assert_allclose(total, 0.5 * intra + 2.0 * sum(per_view), rtol=1e-5)
    for j, value in enumerate(per_view, start=1):
        np.testing.assert_allclose(metrics[f"loss/inter_view{j}"], value / 2, rtol=1e-5)
        np.testing.assert_allclose(
            metrics[f"mi_bound/view{j}"], math.log(16) - value / 2, rtol=1e-5
        )
    cfg.view_normalisation = "mean"
    _, metrics_mean = _total_loss(out, cfg)
    np.testing.assert_allclose(metrics_mean["loss/inter"], sum(per_view) / 2, rtol=1e-5)


def test_crosspoint_inter_term_is_nt_xent_of_mean_point_and_image():
    rng = np.random.default_rng(3)
    out = _outputs(rng, dims=(6,))
    total, metrics = _total_loss(out, losses.default_loss_config("crosspoint"))
    p, i = np.asarray(out["point_view_embeddings"][0]), np.asarray(out["image_view_embeddings"][0])
    np.testing.assert_allclose(metrics["loss/inter"], _nt_xent_by_hand(p, i, TAU), rtol=1e-5)
    assert "mi_bound/view1" not in metrics and "loss/inter_view1" in metrics
    with pytest.raises(ValueError, match="view_normalisation"):
        losses.total_loss(
            out, {**losses.default_loss_config().to_dict(), "view_normalisation": "avg"}
        )


@pytest.mark.parametrize("mode", ["mmpoint", "crosspoint"])
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_sharded_loss_equals_unsharded_value_and_gradients(eight_devices, mode, axis_type):
    out = _outputs(
        np.random.default_rng(4), batch=16, dims=(6,) if mode == "crosspoint" else (4, 6)
    )
    cfg = losses.default_loss_config(mode)
    mesh = Mesh(np.array(eight_devices), ("data",), axis_types=(axis_type,))

    def unsharded(o):
        return losses.total_loss(o, cfg)

    def sharded(o):
        return losses.sharded_total_loss(o, cfg, mesh)

    (value, metrics), grads = jax.jit(jax.value_and_grad(unsharded, has_aux=True))(out)
    (value_s, metrics_s), grads_s = jax.jit(jax.value_and_grad(sharded, has_aux=True))(out)
    np.testing.assert_allclose(value_s, value, rtol=1e-5)
    assert set(metrics_s) == set(metrics)
    for key in metrics:
        np.testing.assert_allclose(metrics_s[key], metrics[key], rtol=1e-5, err_msg=key)
    for g, g_s in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_s), strict=True):
        np.testing.assert_allclose(g_s, g, rtol=1e-4, atol=1e-6)
