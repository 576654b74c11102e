"""BatchNorm re-estimation of the random-init baseline: every running statistic equals the
population moments of its layer's inputs over the whole split (eval-mode forward), computed here
the plain way (edge tensor [x_j - x_i, x_i] @ W over every cloud, point and neighbour)."""

import jax
import numpy as np
import pytest

from mmpoint_jax.evaluate import bn_reestimate
from mmpoint_jax.models import build_point_encoder, default_point_encoder_config, knn

K = 4
WIDTHS = (8, 8, 16, 16)


def _clouds(count=10, points=64, seed=0):
    rng = np.random.default_rng(seed)
    # different scales per cloud: the between-cloud spread must enter the population variance
    scales = rng.uniform(0.5, 2.0, size=(count, 1, 1))
    return (rng.normal(size=(count, points, 3)) * scales + 0.3).astype(np.float32)


def _population(values):
    """Mean and unbiased variance per channel over every axis but the last (float64)."""
    flat = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
    return flat.mean(axis=0), flat.var(axis=0, ddof=1)


def _edge_outputs(x, kernel):
    """Plain EdgeConv pre-BN: [x_j - x_i, x_i] @ W for the k nearest neighbours. [M, N, k, F]."""
    idx = np.asarray(knn(jax.numpy.asarray(x), K))  # [M, N, k], the model's own neighbour rule
    neighbours = np.stack([cloud[i] for cloud, i in zip(x, idx, strict=True)])  # [M, N, k, C]
    centre = np.broadcast_to(x[:, :, None, :], neighbours.shape)
    edges = np.concatenate([neighbours - centre, centre], axis=-1).astype(np.float64)
    return edges @ np.asarray(kernel, np.float64)


@pytest.mark.parametrize("edgeconv", ["factorised", "plain"])
def test_dgcnn_running_stats_equal_population_moments_of_every_layer(edgeconv):
    cfg = default_point_encoder_config("dgcnn", k=K, emb_dims=32, widths=WIDTHS, edgeconv=edgeconv)
    points = _clouds()
    initial = bn_reestimate.init_encoder_variables(cfg, points.shape[1], seed=3)
    # batch 4 over 10 clouds: the padded last batch must not count its padding
    variables, report = bn_reestimate.reestimate_batch_stats(cfg, initial, points, batch_size=4)
    assert [layer["layer"] for layer in report["layers"]] == [
        "edgeconv1/bn", "edgeconv2/bn", "edgeconv3/bn", "edgeconv4/bn", "bn5",
    ]  # fmt: skip
    assert report["layers"][0]["values"] == 10 * 64 * K
    jax.tree.map(np.testing.assert_array_equal, variables["params"], initial["params"])

    _, extras = build_point_encoder(cfg).apply(variables, points, train=False)
    params, stats = variables["params"], variables["batch_stats"]
    layer_inputs = [points, *(np.asarray(f) for f in extras["layer_features"][:-1])]
    for layer, x in enumerate(layer_inputs, start=1):
        name = f"edgeconv{layer}"
        mean, var = _population(_edge_outputs(x, params[name]["kernel"]))
        np.testing.assert_allclose(stats[name]["bn"]["mean"], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[name]["bn"]["var"], var, rtol=1e-4, atol=1e-6)
    concat = np.concatenate([np.asarray(f) for f in extras["layer_features"]], axis=-1)
    mean, var = _population(concat.astype(np.float64) @ np.asarray(params["conv5"]["kernel"]))
    np.testing.assert_allclose(stats["bn5"]["mean"], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["bn5"]["var"], var, rtol=1e-4, atol=1e-6)


def test_first_layer_needs_the_between_batch_spread():
    """Averaging per-batch variances (what a moving average of train-mode batches does) misses
    the spread of the batch means; the pooled moments do not."""
    cfg = default_point_encoder_config("dgcnn", k=K, emb_dims=32, widths=WIDTHS)
    points = _clouds(count=8)
    initial = bn_reestimate.init_encoder_variables(cfg, points.shape[1], seed=0)
    variables, _ = bn_reestimate.reestimate_batch_stats(cfg, initial, points, batch_size=2)
    edges = _edge_outputs(points, initial["params"]["edgeconv1"]["kernel"])  # [M, N, k, F]
    _, population_var = _population(edges)
    per_batch = np.mean([_population(edges[i : i + 2])[1] for i in range(0, 8, 2)], axis=0)
    running = variables["batch_stats"]["edgeconv1"]["bn"]["var"]
    np.testing.assert_allclose(running, population_var, rtol=1e-4)
    assert np.max(np.abs(per_batch / population_var - 1)) > 1e-2  # the naive average is off


def test_pooled_moments_match_numpy_on_uneven_additions():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 30, 5)) * rng.uniform(0.1, 3, size=(7, 1, 1)) + 100.0
    pooled = bn_reestimate.PooledMoments()
    for chunk in (values[:3], values[3:4], values[4:]):
        pooled.add(chunk.mean(axis=1), chunk.var(axis=1), 30)
    flat = values.reshape(-1, 5)
    np.testing.assert_allclose(pooled.mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pooled.unbiased_variance(), flat.var(axis=0, ddof=1), rtol=1e-10)
    assert pooled.count == 7 * 30


def test_pointnet_first_layer_and_random_init_encoder():
    cfg = default_point_encoder_config("pointnet", emb_dims=16)
    points = _clouds(count=5)
    variables = bn_reestimate.random_init_encoder(cfg, points, seed=1, batch_size=2)
    initial = bn_reestimate.init_encoder_variables(cfg, points.shape[1], seed=1)
    jax.tree.map(np.testing.assert_array_equal, variables["params"], initial["params"])
    mean, var = _population(points.astype(np.float64) @ initial["params"]["conv1"]["kernel"])
    np.testing.assert_allclose(variables["batch_stats"]["bn1"]["mean"], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(variables["batch_stats"]["bn1"]["var"], var, rtol=1e-4)
    # eval-mode features now have a sane scale (initial stats 0/1 would leave them arbitrary)
    features, _ = build_point_encoder(cfg).apply(variables, points, train=False)
    assert np.all(np.isfinite(features))
