import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmpoint_jax.augment import keys as aug_keys
from mmpoint_jax.augment import points as aug

N = 64


def _cloud(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 2.0]).astype(np.float32)


def _only(step, **strengths):
    """A config with only `step` switched on."""
    cfg = aug.default_point_aug_config()
    for name in aug.STEPS:
        cfg[name] = name == step
    cfg.update(strengths)
    return cfg


def _run_seeds(points, cfg, seeds):
    """The augmented cloud for each seed [S, N, 3], compiled once."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(list(seeds)))
    batch = jnp.broadcast_to(points, (len(keys), *points.shape))
    return np.asarray(jax.jit(lambda p, k: aug.augment_points(p, k, cfg))(batch, keys))


def _run(points, cfg, seed=0):
    return _run_seeds(points, cfg, [seed])[0]


def test_shapes_dtypes_and_same_key_same_output():
    cfg = aug.default_point_aug_config()
    batch = jnp.asarray(np.stack([_cloud(i) for i in range(4)]))
    keys = aug_keys.example_keys(0, 7, np.arange(4))
    fn = jax.jit(chex.assert_max_traces(lambda p, k: aug.augment_points(p, k, cfg), n=1))
    out = fn(batch, keys)
    chex.assert_shape(out, (4, N, 3))
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_array_equal(out, fn(batch, keys))
    # each example's output depends only on its own cloud and key (vmap over examples)
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(fn(batch[perm], keys[perm]), out[perm], atol=1e-6)
    # the two clouds of the intra-modal loss come from independent keys
    first = fn(batch, aug_keys.stream_keys(keys, aug_keys.POINTS_FIRST))
    second = fn(batch, aug_keys.stream_keys(keys, aug_keys.POINTS_SECOND))
    assert not np.allclose(first, second)


def test_zero_strength_is_identity():
    cfg = aug.default_point_aug_config()
    cfg.update(
        normalise=False,
        scale_low=1.0,
        scale_high=1.0,
        max_angle=0.0,
        translate_fraction=0.0,
        jitter_sigma=0.0,
        dropout_max_ratio=0.0,
    )
    cloud = _cloud()
    np.testing.assert_array_equal(_run(cloud, cfg), cloud)


def test_normalise_centres_into_the_unit_sphere():
    out = _run(_cloud(), _only("normalise"))
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1).max(), 1.0, rtol=1e-6)


def test_scale_is_one_isotropic_factor_in_range():
    cloud = _cloud()
    for scaled in _run_seeds(cloud, _only("scale"), range(5)):
        ratio = scaled / cloud
        assert np.allclose(ratio, ratio[0, 0], rtol=1e-5) and 0.5 <= ratio[0, 0] <= 2.0


def test_rotation_about_y_keeps_norms_and_matches_rodrigues():
    cloud = _cloud()
    out = _run(cloud, _only("rotate"))
    np.testing.assert_allclose(
        np.linalg.norm(out, axis=1), np.linalg.norm(cloud, axis=1), rtol=1e-5
    )
    np.testing.assert_array_equal(out[:, 1], cloud[:, 1])

    angle = 0.7
    axis = np.array([0.0, 1.0, 0.0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    expected_r = (
        np.cos(angle) * np.eye(3)
        + np.sin(angle) * cross
        + (1 - np.cos(angle)) * np.outer(axis, axis)
    )
    np.testing.assert_allclose(aug.rotation_about_y(jnp.float32(angle)), expected_r, atol=1e-6)
    np.testing.assert_allclose(
        aug.rotate(jnp.asarray(cloud), jnp.float32(angle)), cloud @ expected_r.T, atol=1e-5
    )


def test_translation_is_one_offset_within_half_the_extent():
    cloud = _cloud()
    extent = cloud.max(0) - cloud.min(0)
    for moved in _run_seeds(cloud, _only("translate"), range(5)):
        offset = moved - cloud
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-5)
        assert np.all(np.abs(offset[0]) <= 0.5 * extent + 1e-6)


def test_jitter_is_small_clipped_noise():
    cloud = _cloud(n=4096)
    noise = _run(cloud, _only("jitter")) - cloud
    assert np.abs(noise).max() <= 0.05 + 1e-6
    assert 0.008 < noise.std() < 0.012
    clipped = _run(cloud, _only("jitter", jitter_sigma=1.0, jitter_clip=0.05)) - cloud
    np.testing.assert_allclose(np.abs(clipped).max(), 0.05, atol=1e-6)


def test_input_dropout_replaces_points_by_the_first():
    cloud = _cloud(n=512)
    ratios = []
    for out in _run_seeds(cloud, _only("dropout"), range(8)):
        changed = np.any(out != cloud, axis=1)
        np.testing.assert_array_equal(out[changed], np.broadcast_to(cloud[0], out[changed].shape))
        ratios.append(changed.mean())
    assert max(ratios) < 0.875 + 0.05 and len(set(ratios)) > 1


@pytest.mark.parametrize("index", [0, 5, 1 << 20])
def test_example_keys_fold_seed_step_and_global_index(index):
    keys = aug_keys.example_keys(3, 11, np.array([index, index + 1]))
    expected = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(3), 11), index)
    np.testing.assert_array_equal(keys[0], expected)
    # a host that holds only the second example derives the same key for it
    np.testing.assert_array_equal(aug_keys.example_keys(3, 11, np.array([index + 1]))[0], keys[1])
