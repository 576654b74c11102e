"""DGCNN and PointNet against the plain numpy version of the PyTorch networks; EdgeConv variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmpoint_jax.convert import convert_state_dict, synthetic
from mmpoint_jax.models import (
    BatchNorm,
    ClassificationHead,
    build_point_encoder,
    dgcnn,
    knn,
)
from mmpoint_jax.models import numpy_reference as ref

K = 4
NUM_POINTS = 64


@pytest.fixture(scope="module")
def converted():
    state = synthetic.dgcnn_state_dict(np.random.default_rng(0), num_classes=5)
    return state, convert_state_dict(state, "dgcnn", k=K)


def _points(seed=1, batch=3):
    return np.random.default_rng(seed).normal(size=(batch, NUM_POINTS, 3)).astype(np.float32)


def _build(conv, **overrides):
    cfg = conv.model_config.copy_and_resolve_references()
    cfg.update(overrides)
    return build_point_encoder(cfg)


def _apply(model, variables, points, train):
    if train:
        (feature, extras), updated = model.apply(
            variables, points, train=True, mutable=["batch_stats"]
        )
        return feature, extras, updated["batch_stats"]
    feature, extras = model.apply(variables, points, train=False)
    return feature, extras, None


def test_knn_matches_reference_and_includes_the_point():
    x = np.random.default_rng(2).normal(size=(2, 50, 5)).astype(np.float32)
    got = np.asarray(knn(jnp.asarray(x), 6))
    want = ref.knn(np.transpose(x, (0, 2, 1)).astype(np.float64), 6)
    np.testing.assert_array_equal(np.sort(got, axis=-1), np.sort(want, axis=-1))
    np.testing.assert_array_equal(got[:, :, 0], np.broadcast_to(np.arange(50), (2, 50)))
    with pytest.raises(ValueError, match="neighbours"):
        knn(jnp.asarray(x), 51)


@pytest.mark.parametrize("edgeconv", ["factorised", "plain"])
@pytest.mark.parametrize("train", [False, True])
def test_dgcnn_matches_numpy_reference(converted, monkeypatch, edgeconv, train):
    """Same converted weights, same neighbour lists: features and running stats agree."""
    state, conv = converted
    points = _points()
    want, want_stats, neighbour_lists = ref.dgcnn_forward(state, points, K, train)
    lists = iter(neighbour_lists)
    # Feature-space near-ties may rank differently in float32 vs float64: share the neighbours.
    monkeypatch.setattr(dgcnn, "knn", lambda x, k, method="exact": jnp.asarray(next(lists)))
    feature, extras, stats = _apply(_build(conv, edgeconv=edgeconv), conv.variables, points, train)
    emb_dims = conv.model_config.emb_dims
    assert feature.shape == (3, 2 * emb_dims)
    assert extras["point_features"].shape == (3, NUM_POINTS, emb_dims)
    np.testing.assert_allclose(feature, want, rtol=1e-4, atol=1e-4)
    if train:
        for i in range(1, 5):
            for ours, theirs in (("mean", "running_mean"), ("var", "running_var")):
                np.testing.assert_allclose(
                    stats[f"edgeconv{i}"]["bn"][ours],
                    want_stats[f"bn{i}.{theirs}"],
                    rtol=1e-4,
                    atol=1e-5,
                )
        np.testing.assert_allclose(
            stats["bn5"]["var"], want_stats["bn5.running_var"], rtol=1e-4, atol=1e-5
        )


def test_dgcnn_with_its_own_knn_matches_reference_in_eval_mode(converted):
    state, conv = converted
    points = _points(seed=3)
    want, _, _ = ref.dgcnn_forward(state, points, K, train=False)
    feature, _, _ = _apply(build_point_encoder(conv.model_config), conv.variables, points, False)
    np.testing.assert_allclose(feature, want, rtol=1e-4, atol=1e-4)


def test_edgeconv_variants_agree_in_values_stats_and_gradients(converted):
    """factorised (default), plain, and factorised with remat: same numbers and gradients."""
    _, conv = converted
    points = jnp.asarray(_points(seed=4))

    # points go in as an argument: closed-over constants make XLA constant-fold the network
    def loss(params, points, model):
        variables = {"params": params, "batch_stats": conv.variables["batch_stats"]}
        feature, _, stats = _apply(model, variables, points, True)
        return jnp.sum(jnp.sin(feature)), (feature, stats)

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    results = {
        name: grad_fn(conv.variables["params"], points, _build(conv, **overrides))
        for name, overrides in {
            "factorised": {},
            "plain": {"edgeconv": "plain"},
            "remat": {"remat": True},
        }.items()
    }
    reference = jax.tree.leaves(results["factorised"])
    for name in ("plain", "remat"):
        for a, b in zip(jax.tree.leaves(results[name]), reference, strict=True):
            scale = float(jnp.max(jnp.abs(b))) + 1e-6
            np.testing.assert_allclose(a / scale, b / scale, atol=2e-4, err_msg=name)


def test_edgeconv_eval_mode_is_differentiable_like_plain():
    """Frozen-BN fine-tuning differentiates in eval mode: both forms give the same gradients."""
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(2, 32, 5)).astype(np.float32))
    idx = knn(x, K)
    variables = dgcnn.EdgeConv(6).init(jax.random.PRNGKey(0), x, idx, train=False)
    variables["params"]["bn"]["scale"] = jnp.asarray([1.0, -1.0, 0.5, -2.0, 1.5, 1.0])

    def loss(params, x, implementation):
        layer = dgcnn.EdgeConv(6, implementation)
        out = layer.apply({**variables, "params": params}, x, idx, train=False)
        return jnp.sum(jnp.sin(out))

    grads = {
        impl: jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(
            variables["params"], x, impl
        )
        for impl in ("factorised", "plain")
    }
    assert float(jnp.max(jnp.abs(grads["factorised"][1]))) > 0
    for a, b in zip(
        jax.tree.leaves(grads["factorised"]), jax.tree.leaves(grads["plain"]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_stays_close_to_float32(converted):
    _, conv = converted
    points = jnp.asarray(_points(seed=7))
    forward = jax.jit(lambda v, p, model: model.apply(v, p, train=False)[0], static_argnums=2)
    f32 = forward(conv.variables, points, _build(conv))
    bf16 = forward(conv.variables, points, _build(conv, dtype="bfloat16"))
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(bf16, f32, rtol=0.1, atol=0.1 * float(jnp.std(f32)))


@pytest.mark.parametrize("train", [False, True])
def test_global_feature_invariant_to_point_order(converted, train):
    _, conv = converted
    points = _points(seed=5)
    permuted = points[:, np.random.default_rng(6).permutation(NUM_POINTS)]
    model = build_point_encoder(conv.model_config)
    a, _, _ = _apply(model, conv.variables, points, train)
    b, _, _ = _apply(model, conv.variables, permuted, train)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_pointnet_matches_numpy_reference():
    state = synthetic.pointnet_state_dict(np.random.default_rng(8), emb_dims=32)
    params, stats = {}, {}
    for i in range(1, 6):
        params[f"conv{i}"] = {"kernel": state[f"conv{i}.weight"][:, :, 0].T}
        params[f"bn{i}"] = {"scale": state[f"bn{i}.weight"], "bias": state[f"bn{i}.bias"]}
        stats[f"bn{i}"] = {"mean": state[f"bn{i}.running_mean"], "var": state[f"bn{i}.running_var"]}
    model = build_point_encoder({"name": "pointnet", "emb_dims": 32})
    points = _points(seed=9)
    for train in (False, True):
        want, want_stats = ref.pointnet_forward(state, points, train)
        got, _, got_stats = _apply(model, {"params": params, "batch_stats": stats}, points, train)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        if train:
            np.testing.assert_allclose(
                got_stats["bn5"]["var"], want_stats["bn5.running_var"], rtol=1e-4
            )


def test_classification_head_matches_reference(converted):
    state, conv = converted
    features = np.random.default_rng(10).normal(size=(4, 64)).astype(np.float32)
    head = ClassificationHead(conv.heads_config["classifier"]["num_classes"])
    variables = {c: conv.heads[c]["classifier"] for c in ("params", "batch_stats")}
    np.testing.assert_allclose(
        head.apply(variables, features, train=False),
        ref.classifier_forward(state, features),
        rtol=1e-4,
        atol=1e-5,
    )
    logits_a = head.apply(
        variables, features, train=True, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=True
    )[0]
    logits_b = head.apply(
        variables, features, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=True
    )[0]
    assert not np.allclose(logits_a, logits_b)  # dropout is active in train mode


def test_batch_norm_running_variance_is_unbiased():
    x = np.random.default_rng(11).normal(size=(5, 7, 3)).astype(np.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), x, train=False)
    y, updated = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(
        updated["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5
    )
    np.testing.assert_allclose(
        updated["batch_stats"]["mean"], 0.1 * flat.mean(0), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        np.asarray(y).reshape(-1, 3),
        (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5),
        rtol=1e-4,
        atol=1e-5,
    )
