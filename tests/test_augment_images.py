import colorsys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmpoint_jax.augment import images as aug
from mmpoint_jax.config_lib import ConfigError
from mmpoint_jax.data.pipeline_testing import smooth_views

SIZE = 32


def _views(batch=2, views=4, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([smooth_views(rng, views, SIZE) for _ in range(batch)])  # [B, m, H, W, 3]


def _keys(batch=2, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), batch)


def _neutral(cfg):
    """Every transform at zero strength (square images: a crop of the whole image)."""
    cfg.update(
        flip_prob=0.0,
        color_jitter_prob=1.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        grayscale_prob=0.0,
        blur_prob=0.0,
    )
    return cfg


def test_views_shape_dtype_range_levels_and_determinism():
    cfg = aug.default_image_aug_config()
    cfg.normalise = False
    views, keys = _views(), _keys()
    fn = jax.jit(chex.assert_max_traces(lambda v, k: aug.augment_views(v, k, cfg, 24), n=1))
    out = fn(views, keys)
    chex.assert_shape(out, (2, 4, 24, 24, 3))
    assert out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6
    np.testing.assert_array_equal(out, fn(views, keys))
    assert not np.allclose(out, fn(views, _keys(seed=1)))
    assert aug.view_levels(6, cfg) == (0, 1, 2, 3, 3, 3)  # clipped to the top of the ladder
    normalised = aug.normalise_imagenet(out)
    np.testing.assert_allclose(normalised[..., 1], (out[..., 1] - 0.456) / 0.224, atol=1e-5)


def test_zero_strength_is_identity_at_every_level():
    cfg = _neutral(aug.default_image_aug_config())
    cfg.normalise = False
    views = _views()
    out = jax.jit(lambda v, k: aug.augment_views(v, k, cfg, SIZE))(views, _keys())
    np.testing.assert_allclose(out, views / 255.0, atol=1e-5)


def test_each_level_contains_the_one_below():
    cfg = aug.default_image_aug_config()
    levels = aug.ladder_levels(cfg)
    assert levels[0] == {"flip"}
    assert all(levels[j] < levels[j + 1] for j in range(len(levels) - 1))
    # Level j+1 with the transforms it adds neutralised gives level j's output for the same key:
    # the added transforms do not change the draws of the others.
    cfg.update(normalise=False, hue=0.0)  # hue has its own test; it is slow to compile
    neutral = _neutral(aug.default_image_aug_config())
    image, key = _views(1, 1)[0, 0], jax.random.PRNGKey(3)
    for level in range(len(levels) - 1):
        added = levels[level + 1] - levels[level]
        upper = aug.default_image_aug_config()
        upper.update(normalise=False, hue=0.0)
        for name in added:
            for field in _FIELDS[name]:
                upper[field] = neutral[field]
        lower_out = jax.jit(lambda i, k: aug.augment_view(i, k, level, cfg))(image, key)  # noqa: B023
        upper_out = jax.jit(lambda i, k: aug.augment_view(i, k, level + 1, upper))(image, key)  # noqa: B023
        np.testing.assert_allclose(upper_out, lower_out, atol=1e-5, err_msg=f"level {level + 1}")


_FIELDS = {
    "crop": ("crop_scale", "crop_ratio"),
    "grayscale": ("grayscale_prob",),
    "blur": ("blur_prob",),
    "color_jitter": ("brightness", "contrast", "saturation", "hue"),
}


def test_ladder_config_errors_name_the_field():
    cfg = aug.default_image_aug_config()
    cfg.ladder = ("flip", "colour_jitter")
    with pytest.raises(ConfigError, match="ladder level 1.*colour_jitter"):
        aug.ladder_levels(cfg)
    cfg = aug.default_image_aug_config()
    cfg.view_levels = (0, 7)
    with pytest.raises(ConfigError, match="view_levels"):
        aug.view_levels(2, cfg)


def test_crop_and_resize_of_an_unscaled_box_is_a_slice():
    image = jnp.asarray(_views(1, 1)[0, 0], jnp.float32)
    box = jnp.array([4, 6, 16, 16])
    np.testing.assert_allclose(
        aug.crop_and_resize(image, box, (16, 16)), image[4:20, 6:22], atol=1e-4
    )
    whole = aug.crop_and_resize(image, jnp.array([0, 0, SIZE, SIZE]), (SIZE, SIZE))
    np.testing.assert_allclose(whole, image, atol=1e-4)


def test_random_resized_crop_boxes_fit_and_fall_back_to_the_centre():
    draws = jax.random.uniform(jax.random.PRNGKey(0), (64, aug.CROP_DRAWS))
    boxes = np.asarray(
        jax.jit(
            jax.vmap(lambda u: aug.random_resized_crop_box(u, 32, 40, (0.2, 1.0), (0.75, 4 / 3)))
        )(draws)
    )
    top, left, h, w = boxes.T
    assert np.all((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 40))
    area = h * w / (32 * 40)
    assert area.min() >= 0.15 and area.max() <= 1.0 and len(set(map(tuple, boxes))) > 32
    # no candidate can fit (area > image): torchvision's centre crop with the ratio clamped
    box = jax.jit(lambda u: aug.random_resized_crop_box(u, 32, 64, (2.0, 3.0), (0.75, 4 / 3)))(
        draws[0]
    )
    np.testing.assert_array_equal(box, [0, (64 - 43) // 2, 32, 43])


def test_colour_operations_match_plain_formulas():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(8, 8, 3)).astype(np.float32)
    gray = image @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(
        aug.adjust_brightness(image, 1.3), np.clip(image * 1.3, 0, 1), atol=1e-6
    )
    np.testing.assert_allclose(
        aug.adjust_contrast(image, 0.6), np.clip(0.6 * image + 0.4 * gray.mean(), 0, 1), atol=1e-6
    )
    np.testing.assert_allclose(
        aug.adjust_saturation(image, 1.4),
        np.clip(1.4 * image + (-0.4) * gray[..., None], 0, 1),
        atol=1e-6,
    )
    expected_hsv = np.array([colorsys.rgb_to_hsv(*px) for px in image.reshape(-1, 3)]).reshape(
        image.shape
    )
    np.testing.assert_allclose(aug.rgb_to_hsv(image), expected_hsv, atol=1e-5)
    shifted = expected_hsv.copy()
    shifted[..., 0] = (shifted[..., 0] + 0.3) % 1.0
    expected = np.array([colorsys.hsv_to_rgb(*px) for px in shifted.reshape(-1, 3)]).reshape(
        image.shape
    )
    np.testing.assert_allclose(aug.adjust_hue(image, 0.3), expected, atol=1e-5)


def test_gaussian_blur_matches_a_plain_convolution():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(12, 10, 3)).astype(np.float32)
    sigma, size = 1.3, 5
    taps = np.arange(size) - size // 2
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    expected = np.zeros_like(image)
    for y in range(12):
        for x in range(10):
            window = padded[y : y + size, x : x + size]  # [K, K, 3]
            expected[y, x] = np.einsum("i,j,ijc->c", weights, weights, window)
    np.testing.assert_allclose(
        aug.gaussian_blur(jnp.asarray(image), sigma, size), expected, atol=1e-5
    )
    assert aug.blur_kernel_size(224, 0.1) == 23 and aug.blur_kernel_size(32, 0.1) == 3


def test_flip_and_grayscale_at_full_probability():
    cfg = aug.default_image_aug_config()
    cfg.update(ladder=("flip+grayscale",), flip_prob=1.0, grayscale_prob=1.0, normalise=False)
    image = _views(1, 1)[0, 0]
    out = np.asarray(aug.augment_view(image, jax.random.PRNGKey(0), 0, cfg))
    gray = (image / 255.0).astype(np.float32) @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(out, np.repeat(gray[:, ::-1, None], 3, axis=2), atol=1e-5)


def test_crosspoint_preset_is_flip_and_jitter_without_hue():
    cfg = aug.crosspoint_image_aug_config()
    assert aug.ladder_levels(cfg) == (frozenset({"flip", "color_jitter"}),)
    assert cfg.hue == 0.0 and cfg.color_jitter_prob == 1.0


def test_colour_jitter_applies_its_operations_in_the_drawn_order():
    cfg = aug.default_image_aug_config()
    image = np.random.default_rng(1).uniform(size=(8, 8, 3)).astype(np.float32)
    draws = jnp.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.1, 0.8, 0.2])
    out = jax.jit(lambda x, u: aug.color_jitter(x, u, cfg))(image, draws)
    # factors 0.6 + 0.8u, hue shift 0.1(2u - 1); order argsort(0.3, 0.1, 0.8, 0.2) = 1, 3, 0, 2
    expected = aug.adjust_contrast(image, 0.6 + 0.8 * 0.9)
    expected = aug.adjust_hue(expected, 0.1 * (2 * 0.7 - 1))
    expected = aug.adjust_brightness(expected, 0.6 + 0.8 * 0.1)
    expected = aug.adjust_saturation(expected, 0.6 + 0.8 * 0.5)
    np.testing.assert_allclose(out, expected, atol=1e-5)
