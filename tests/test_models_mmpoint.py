"""ResNet against the numpy reference; the joint MMPoint model (heads, batching, sharding)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from mmpoint_jax.convert import convert_state_dict, synthetic
from mmpoint_jax.models import (
    MMPoint,
    ProjectionHead,
    build_image_encoder,
    build_point_encoder,
    default_model_config,
    head_layout,
)
from mmpoint_jax.models import numpy_reference as ref

BATCH, POINTS, SIZE = 4, 64, 32


@pytest.mark.parametrize("depth,size", [("resnet18", 32), ("resnet50", 64)])
def test_resnet_matches_numpy_reference(depth, size):
    """torchvision layout: padding, v1.5 strides, shortcuts, pooling; eval and train mode."""
    state = synthetic.resnet_state_dict(np.random.default_rng(0), depth=depth, width=4)
    conv = convert_state_dict(state, "resnet50_head")
    assert conv.model_config.name == depth
    images = np.random.default_rng(1).normal(size=(BATCH, size, size, 3)).astype(np.float32)
    model = build_image_encoder(conv.model_config)
    forward = jax.jit(
        lambda v, x, train: model.apply(v, x, train=train, mutable=["batch_stats"]),
        static_argnums=2,
    )
    for train in (False, True):
        want, want_stats = ref.resnet_forward(state, "resnet.", images, train)
        got, updated = forward(conv.variables, images, train)
        # BN on the 1x1 (or 2x2) last stage of a 4-image batch amplifies float32 rounding
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
        if train:
            np.testing.assert_allclose(
                updated["batch_stats"]["bn1"]["var"],
                want_stats["resnet.bn1.running_var"],
                rtol=1e-4,
            )


@pytest.mark.parametrize("bias", [True, False])
def test_projection_head_matches_reference_in_eval_and_train_mode(bias):
    """Linear-BN-ReLU-Linear as nn.Sequential computes it, running statistics included."""
    state = synthetic.projection_head_state(np.random.default_rng(5), "inv_head", 12, 10, 6, bias)
    linear = lambda i: {  # noqa: E731
        "kernel": state[f"inv_head.{i}.weight"].T,
        **({"bias": state[f"inv_head.{i}.bias"]} if bias else {}),
    }
    variables = {
        "params": {
            "linear1": linear(0),
            "bn": {"scale": state["inv_head.1.weight"], "bias": state["inv_head.1.bias"]},
            "linear2": linear(3),
        },
        "batch_stats": {
            "bn": {"mean": state["inv_head.1.running_mean"], "var": state["inv_head.1.running_var"]}
        },
    }
    x = np.random.default_rng(6).normal(size=(8, 12)).astype(np.float32)
    head = ProjectionHead(10, 6, use_bias=bias)
    for train in (False, True):
        want, want_stats = ref.projection_head_forward(state, "inv_head.", x, train)
        got, updated = head.apply(variables, x, train=train, mutable=["batch_stats"])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        if train:
            np.testing.assert_allclose(
                updated["batch_stats"]["bn"]["var"], want_stats["inv_head.1.running_var"], rtol=1e-5
            )


def _tiny_config(mode="mmpoint", num_views=2):
    cfg = default_model_config(mode, num_views, image_encoder="resnet18")
    cfg.point_encoder.update(k=4, emb_dims=16, widths=(8, 8, 8, 8))
    cfg.image_encoder.width = 4
    cfg.point_head_hidden, cfg.image_head_hidden = 16, 8
    cfg.head_dims = (12,) if mode == "crosspoint" else (12,) + tuple(range(4, 4 + num_views))
    return cfg


def _inputs(seed, batch=BATCH, num_views=2):
    rng = np.random.default_rng(seed)
    points1 = rng.normal(size=(batch, POINTS, 3)).astype(np.float32)
    points2 = rng.normal(size=(batch, POINTS, 3)).astype(np.float32)
    views = rng.normal(size=(batch, num_views, SIZE, SIZE, 3)).astype(np.float32)
    return points1, points2, views


def _random_variables(model, inputs, seed=0):
    """Variables with the model's structure and random values, without compiling `init`."""
    shapes = jax.eval_shape(lambda *a: model.init(jax.random.PRNGKey(0), *a, train=False), *inputs)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if getattr(path[-1], "key", None) == "var":  # BN running variance must be positive
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        fan_in = leaf.shape[-2] if len(leaf.shape) >= 2 else 10
        return (rng.normal(size=leaf.shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def mmpoint_setup():
    cfg = _tiny_config()
    model = MMPoint(cfg)
    inputs = _inputs(2)
    variables = _random_variables(model, inputs)
    apply = jax.jit(
        lambda v, p1, p2, views, train: model.apply(
            v, p1, p2, views, train=train, mutable=["batch_stats"]
        ),
        static_argnums=4,
    )
    return cfg, model, variables, inputs, apply


def _head(variables, name, j):
    return {c: variables[c][name][f"head_{j}"] for c in ("params", "batch_stats")}


def test_mmpoint_outputs_and_heads_in_eval_mode(mmpoint_setup):
    cfg, _, variables, inputs, apply = mmpoint_setup
    assert set(variables["params"]) == {
        "point_encoder",
        "image_encoder",
        "point_heads",
        "image_heads",
    }
    out, _ = apply(variables, *inputs, False)
    chex.assert_shape([out["point_feature1"], out["point_feature2"]], (BATCH, 32))
    chex.assert_shape([out["intra1"], out["intra2"]], (BATCH, 12))
    chex.assert_shape(out["point_view_embeddings"], [(BATCH, 4), (BATCH, 5)])
    chex.assert_shape(out["image_view_embeddings"], [(BATCH, 4), (BATCH, 5)])
    encoder = build_point_encoder(cfg.point_encoder)
    enc_vars = {c: variables[c]["point_encoder"] for c in ("params", "batch_stats")}
    feature2, _ = encoder.apply(enc_vars, inputs[1], train=False)
    np.testing.assert_allclose(out["point_feature2"], feature2, rtol=1e-5, atol=1e-5)
    hidden = cfg.point_head_hidden
    head0 = ProjectionHead(hidden, 12).apply(
        _head(variables, "point_heads", 0), feature2, train=False
    )
    np.testing.assert_allclose(out["intra2"], head0, rtol=1e-5, atol=1e-5)
    for j, dim in ((1, 4), (2, 5)):  # h_j(P) = mean of h_j over the two clouds
        head = ProjectionHead(hidden, dim)
        both = [
            head.apply(_head(variables, "point_heads", j), out[f"point_feature{c}"], train=False)
            for c in (1, 2)
        ]
        np.testing.assert_allclose(
            out["point_view_embeddings"][j - 1], (both[0] + both[1]) / 2, rtol=1e-5, atol=1e-5
        )
    images = build_image_encoder(cfg.image_encoder).apply(
        {c: variables[c]["image_encoder"] for c in ("params", "batch_stats")},
        inputs[2][:, 1],
        train=False,
    )
    k2 = ProjectionHead(cfg.image_head_hidden, 5, use_bias=False).apply(
        _head(variables, "image_heads", 1), images, train=False
    )
    np.testing.assert_allclose(out["image_view_embeddings"][1], k2, rtol=1e-4, atol=1e-5)


def test_mmpoint_train_mode_normalises_both_clouds_together(mmpoint_setup):
    """As CrossPoint concatenates the two clouds: BN statistics over 2B rows."""
    cfg, _, variables, inputs, apply = mmpoint_setup
    out, updated = apply(variables, *inputs, True)
    encoder = build_point_encoder(cfg.point_encoder)
    enc_vars = {c: variables[c]["point_encoder"] for c in ("params", "batch_stats")}
    both = np.concatenate([inputs[0], inputs[1]])
    (features, _), enc_stats = encoder.apply(enc_vars, both, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out["point_feature1"], features[:BATCH], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        updated["batch_stats"]["point_encoder"]["bn5"]["var"],
        enc_stats["batch_stats"]["bn5"]["var"],
        rtol=1e-4,
    )
    head_params = variables["params"]["point_heads"]["head_0"]["linear1"]
    hidden = np.asarray(features) @ np.asarray(head_params["kernel"]) + np.asarray(
        head_params["bias"]
    )
    old_mean = variables["batch_stats"]["point_heads"]["head_0"]["bn"]["mean"]
    np.testing.assert_allclose(
        updated["batch_stats"]["point_heads"]["head_0"]["bn"]["mean"],
        0.9 * old_mean + 0.1 * hidden.mean(0),
        rtol=1e-4,
        atol=1e-6,
    )


def test_mmpoint_sharded_over_eight_devices_equals_one_device(mmpoint_setup, eight_devices):
    _, _, variables, _, apply = mmpoint_setup
    inputs = _inputs(3, batch=8)
    mesh = jax.make_mesh((8,), ("data",))  # Explicit axes, jax's default
    sharded = [jax.device_put(x, NamedSharding(mesh, PartitionSpec("data"))) for x in inputs]
    replicated = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
    want, want_stats = apply(variables, *inputs, True)
    with jax.set_mesh(mesh):
        got, got_stats = apply(replicated, *sharded, True)
    for a, b in zip(
        jax.tree.leaves((got, got_stats)), jax.tree.leaves((want, want_stats)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


def test_crosspoint_mode_shares_one_point_head():
    cfg = _tiny_config("crosspoint", 1)
    model = MMPoint(cfg)
    inputs = _inputs(4, num_views=1)
    variables = _random_variables(model, inputs)
    assert list(variables["params"]["point_heads"]) == ["head_0"]
    assert list(variables["params"]["image_heads"]) == ["head_0"]
    out = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *inputs)
    np.testing.assert_allclose(
        out["point_view_embeddings"][0], (out["intra1"] + out["intra2"]) / 2, rtol=1e-5, atol=1e-6
    )


def test_head_layout_and_config_errors():
    assert head_layout(default_model_config("mmpoint", 3)) == (
        (512, 128, 128, 128),
        (128, 128, 128),
    )
    assert head_layout(default_model_config("crosspoint", 1)) == ((256,), (256,))
    explicit = default_model_config("mmpoint", 3)
    explicit.head_dims = (512, 64, 32, 16)
    assert head_layout(explicit) == ((512, 64, 32, 16), (64, 32, 16))
    explicit.num_views = 6  # (d_0, d) broadcasts over any m
    explicit.head_dims = (512, 128)
    assert head_layout(explicit) == ((512,) + (128,) * 6, (128,) * 6)
    bad = default_model_config("mmpoint", 3)
    bad.head_dims = (512, 128, 64)
    with pytest.raises(ValueError, match="head_dims"):
        head_layout(bad)
    with pytest.raises(ValueError, match="one view"):
        default_model_config("crosspoint", 2)
    with pytest.raises(ValueError, match="unknown field"):
        build_point_encoder({"name": "dgcnn", "kk": 3})
    with pytest.raises(ValueError, match="image_encoder.name"):
        build_image_encoder({"name": "resnet101"})


@pytest.mark.parametrize("size,kernel,stride", [(5, 3, 1), (6, 3, 2), (9, 7, 2), (4, 1, 2)])
def test_conv_implementations_agree_in_values_and_gradients(size, kernel, stride):
    from mmpoint_jax.models.resnet import Conv2D

    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, size, size, 5)), jnp.float32)
    convs = {impl: Conv2D(4, kernel, stride, impl=impl) for impl in ("xla", "im2col")}
    variables = convs["xla"].init(jax.random.key(0), x)

    def loss(impl, variables, x):
        return jnp.sum(jnp.sin(convs[impl].apply(variables, x)))

    values = {impl: convs[impl].apply(variables, x) for impl in convs}
    np.testing.assert_allclose(values["im2col"], values["xla"], rtol=1e-5, atol=1e-5)
    grads = {impl: jax.grad(loss, argnums=(1, 2))(impl, variables, x) for impl in convs}
    for a, b in zip(jax.tree.leaves(grads["im2col"]), jax.tree.leaves(grads["xla"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
