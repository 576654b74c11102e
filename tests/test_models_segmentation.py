"""Segmentation networks and the fine-tune classifier: against a plain numpy forward in eval mode
(random weights, random BN statistics, a non-identity spatial transformer), the transformer's
identity start, and variable layouts that a pretrained encoder fits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from mmpoint_jax.models import build_point_encoder, default_point_encoder_config
from mmpoint_jax.models import numpy_reference as ref
from mmpoint_jax.models.classifier import PointCloudClassifier
from mmpoint_jax.models.segmentation import (
    TransformNet,
    part_segmentation_net,
    semantic_segmentation_net,
)

K = 4
BATCH, NUM_POINTS = 2, 32
ENCODER = default_point_encoder_config(k=K, emb_dims=16, widths=(8, 8, 16, 16))


def _random_variables(model, *args, seed=0, **kwargs):
    """Every variable random, from shapes alone (no init compile): kernels scaled by
    1/sqrt(fan_in) so activations stay O(1), BN scales of both signs, variances positive."""
    init = functools.partial(model.init, train=False, **kwargs)
    shapes = flatten_dict(jax.eval_shape(init, jax.random.key(0), *args), sep="/")
    rng = np.random.default_rng(seed)
    values = {}
    for path, leaf in shapes.items():
        shape = leaf.shape
        if path.endswith("/var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith("/kernel"):
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        elif path.endswith("/scale"):
            value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        else:
            value = rng.normal(scale=0.2, size=shape)
        values[path] = value.astype(np.float32)
    return unflatten_dict(values, sep="/")


# --------------------------------------------------------------------- plain numpy forward


def np_knn(x, k):
    return ref.knn(np.transpose(x, (0, 2, 1)), k)  # x [B, N, C] -> [B, N, k]


def np_edges(x, idx):
    neighbours = np.stack([x[b][idx[b]] for b in range(x.shape[0])])  # [B, N, k, C]
    centre = np.repeat(x[:, :, None, :], idx.shape[-1], axis=2)
    return np.concatenate([neighbours - centre, centre], axis=-1)


def np_bn(x, params, stats):
    return (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]


def np_mlp(x, params, stats):
    return ref.leaky_relu(np_bn(x @ params["linear"]["kernel"], params["bn"], stats["bn"]))


def np_encoder(points, graph, params, stats):
    x, layers = points, []
    for i in range(1, 5):
        name = f"edgeconv{i}"
        idx = np_knn(graph if (i == 1 and graph is not None) else x, K)
        y = np_edges(x, idx) @ params[name]["kernel"]  # [B, N, k, F]
        x = ref.leaky_relu(np_bn(y, params[name]["bn"], stats[name]["bn"])).max(axis=2)
        layers.append(x)
    x = np.concatenate(layers, axis=-1) @ params["conv5"]["kernel"]
    return ref.leaky_relu(np_bn(x, params["bn5"], stats["bn5"])), layers


def np_transform(xyz, params, stats):
    h = np_edges(xyz, np_knn(xyz, K))
    h = np_mlp(np_mlp(h, params["conv1"], stats["conv1"]), params["conv2"], stats["conv2"])
    h = np_mlp(h.max(axis=2), params["conv3"], stats["conv3"]).max(axis=1)  # [B, 1024]
    h = np_mlp(np_mlp(h, params["linear1"], stats["linear1"]), params["linear2"], stats["linear2"])
    return (h @ params["kernel"] + params["bias"]).reshape(-1, 3, 3)


def np_segmentation(variables, points, category=None, transform=False, graph_channels=()):
    params, stats = variables["params"], variables["batch_stats"]
    points = points.astype(np.float64)
    if transform:
        matrix = np_transform(points[..., :3], params["transform_net"], stats["transform_net"])
        points = np.concatenate(
            [np.einsum("bnc,bcd->bnd", points[..., :3], matrix), points[..., 3:]], axis=-1
        )
    graph = points[..., list(graph_channels)] if graph_channels else None
    x, layers = np_encoder(points, graph, params["point_encoder"], stats["point_encoder"])
    shape_parts = [x.max(axis=1)]
    if category is not None:
        one_hot = np.eye(16)[category]
        shape_parts.append(np_mlp(one_hot, params["category"], stats["category"]))
    shape_feature = np.concatenate(shape_parts, axis=-1)
    h = np.concatenate(
        [np.repeat(shape_feature[:, None], points.shape[1], axis=1), *layers], axis=-1
    )
    layer = 0
    while f"conv{layer}" in params["head"]:
        h = np_mlp(h, params["head"][f"conv{layer}"], stats["head"][f"conv{layer}"])
        layer += 1
    return h @ params["head"]["logits"]["kernel"]


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("task", ["partseg", "semseg"])
def test_segmentation_matches_numpy_reference(task):
    rng = np.random.default_rng(1)
    if task == "partseg":
        model = part_segmentation_net(ENCODER)
        points = rng.normal(size=(BATCH, NUM_POINTS, 3)).astype(np.float32)
        extra = {"category": np.array([0, 9], np.int32)}
    else:
        model = semantic_segmentation_net(ENCODER)
        points = rng.normal(size=(BATCH, NUM_POINTS, 9)).astype(np.float32)
        extra = {}
    variables = _random_variables(model, jnp.asarray(points), **extra)
    if task == "partseg":  # a transformer near, but not at, the identity
        variables["params"]["transform_net"]["kernel"] *= 0.1
        variables["params"]["transform_net"]["bias"] = np.eye(3, dtype=np.float32).ravel()
    forward = jax.jit(functools.partial(model.apply, train=False))
    got = np.asarray(forward(variables, points, **extra))
    want = np_segmentation(
        variables,
        points,
        category=extra.get("category"),
        transform=task == "partseg",
        graph_channels=(6, 7, 8) if task == "semseg" else (),
    )
    assert got.shape == (BATCH, NUM_POINTS, 50 if task == "partseg" else 13)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if task == "semseg":  # the first graph really is the one on channels 6-8
        on_all = np_segmentation(variables, points, graph_channels=())
        assert not np.allclose(on_all, want, atol=1e-3)


def test_transform_net_starts_as_the_identity():
    xyz = jnp.asarray(np.random.default_rng(2).normal(size=(BATCH, NUM_POINTS, 3)), jnp.float32)
    idx = jnp.asarray(np_knn(np.asarray(xyz), K))
    net = TransformNet()

    @jax.jit
    def fresh_transform(xyz, idx):  # one compiled program: eager init compiles op by op
        variables = net.init(jax.random.key(0), xyz, idx, train=False)
        return net.apply(variables, xyz, idx, train=False)

    matrices = fresh_transform(xyz, idx)
    np.testing.assert_array_equal(matrices, np.broadcast_to(np.eye(3), (BATCH, 3, 3)))


def _encoder_shapes(model, points, **kwargs):
    init = functools.partial(model.init, train=False, **kwargs)
    return jax.eval_shape(init, jax.random.key(0), points)


@pytest.mark.parametrize("network", ["classifier", "partseg"])
def test_a_pretrained_three_channel_encoder_fits_whole(network):
    points = jnp.zeros((BATCH, NUM_POINTS, 3))
    pretrained = _encoder_shapes(build_point_encoder(ENCODER), points)
    if network == "classifier":
        model, extra = PointCloudClassifier(ENCODER, num_classes=5), {}
    else:
        model, extra = part_segmentation_net(ENCODER), {"category": jnp.zeros((BATCH,), jnp.int32)}
    ours = _encoder_shapes(model, points, **extra)
    for collection in ("params", "batch_stats"):
        assert jax.tree.map(np.shape, ours[collection]["point_encoder"]) == jax.tree.map(
            np.shape, pretrained[collection]
        )
    if network == "classifier":
        assert ours["params"]["classifier"]["linear3"]["kernel"].shape == (256, 5)
