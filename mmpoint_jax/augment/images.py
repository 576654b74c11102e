"""The multi-level image augmentation ladder of MM-Point, in pure JAX (runs inside the train step).

A ladder is a tuple of levels; each level names the transforms it adds, joined by '+'
(default `("flip", "color_jitter", "crop+grayscale", "blur")`, DESIGN.md section 1). Level L
applies every transform of levels 0..L, so level L+1 always contains level L. Within a level the
transforms run in one fixed order, `ORDER` (crop first: the later steps then work at the output
size). View j of an object is augmented at `cfg.view_levels[j]`, by default at level j clipped to
the top of the ladder. Levels are static: each compiles its own transforms.

Transforms follow torchvision's definitions (RandomResizedCrop with its ten tries and centre
fallback, ColorJitter with a random order of its four operations, RandomGrayscale, GaussianBlur
with reflect padding, RandomHorizontalFlip). A view's random numbers come from one draw, of which
each transform owns a fixed slice, so adding a transform to a level leaves the others unchanged.
Zero strength (probability 0, jitter strength 0, crop scale and ratio 1 on square images) is the
identity.
Output: float32 normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

from mmpoint_jax.config_lib import ConfigError

ORDER = ("crop", "flip", "color_jitter", "grayscale", "blur")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)
_CROP_TRIES = 10
CROP_DRAWS = 2 * _CROP_TRIES + 2
# Every view draws all its random numbers in one call (one PRNG kernel, fast to compile); each
# transform owns a fixed slice, so enabling one transform never shifts the draws of another.
_DRAW_SLOTS = (
    ("crop", CROP_DRAWS),
    ("flip", 1),
    ("color_jitter", 9),
    ("grayscale", 1),
    ("blur", 2),
)
_NUM_DRAWS = sum(n for _, n in _DRAW_SLOTS)


def default_image_aug_config() -> ml_collections.ConfigDict:
    """MM-Point's ladder with SimCLR/MoCo-v2 strengths; embed as `config.augment.images`."""
    return ml_collections.ConfigDict(
        dict(
            ladder=("flip", "color_jitter", "crop+grayscale", "blur"),
            view_levels=(),  # () = view j at level j, clipped to the top of the ladder
            flip_prob=0.5,
            color_jitter_prob=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.1,
            color_jitter_random_order=True,  # torchvision applies the four in a random order
            crop_scale=(0.2, 1.0),  # fraction of the image area
            crop_ratio=(3 / 4, 4 / 3),  # width / height
            grayscale_prob=0.2,
            blur_prob=0.5,
            blur_sigma=(0.1, 2.0),  # pixels at the output size
            blur_kernel_fraction=0.1,  # kernel width / image width (made odd, >= 3)
            normalise=True,  # ImageNet mean / std
        )
    )


def crosspoint_image_aug_config() -> ml_collections.ConfigDict:
    """CrossPoint's single-view transform (DATA_FORMATS.md B6): jitter (no hue) + flip."""
    cfg = default_image_aug_config()
    cfg.ladder = ("flip+color_jitter",)
    cfg.color_jitter_prob = 1.0
    cfg.hue = 0.0
    return cfg


# ----------------------------------------------------------------------------------------------
# Ladder


def ladder_levels(cfg: ml_collections.ConfigDict) -> tuple[frozenset[str], ...]:
    """The transforms active at each level (cumulative). Unknown names raise ConfigError."""
    levels, active = [], set()
    for level, spec in enumerate(cfg.ladder):
        names = {name.strip() for name in spec.split("+") if name.strip()}
        unknown = names - set(ORDER)
        if unknown:
            raise ConfigError(
                f"augment.images.ladder level {level} ({spec!r}) names {sorted(unknown)}; "
                f"known transforms: {list(ORDER)}"
            )
        active |= names
        levels.append(frozenset(active))
    if not levels:
        raise ConfigError("augment.images.ladder is empty")
    return tuple(levels)


def view_levels(num_views: int, cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The ladder level of each of `num_views` views."""
    top = len(ladder_levels(cfg)) - 1
    if not cfg.view_levels:
        return tuple(min(j, top) for j in range(num_views))
    levels = tuple(int(v) for v in cfg.view_levels)
    if len(levels) < num_views or any(not 0 <= v <= top for v in levels):
        raise ConfigError(
            f"augment.images.view_levels = {levels} must give a level in [0, {top}] "
            f"for each of the {num_views} views"
        )
    return levels[:num_views]


# ----------------------------------------------------------------------------------------------
# Geometry


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def crop_and_resize(image: jax.Array, box: jax.Array, out_size: tuple[int, int]) -> jax.Array:
    """Crops box = (top, left, height, width) [4] and resizes it bilinearly (antialiased).

    [H, W, C] -> [h, w, C]; the box may be traced, the output size is static.
    """
    top, left, height, width = (box[i].astype(jnp.float32) for i in range(4))
    out_h, out_w = out_size
    scale = jnp.stack([out_h / height, out_w / width])
    translation = jnp.stack([-top * out_h / height, -left * out_w / width])
    return jax.image.scale_and_translate(
        image, (out_h, out_w, image.shape[2]), (0, 1), scale, translation, "linear", antialias=True
    )


def random_resized_crop_box(
    uniforms: jax.Array, height: int, width: int, scale, ratio
) -> jax.Array:
    """torchvision's RandomResizedCrop.get_params from U[0, 1) draws [CROP_DRAWS]: int32
    (top, left, h, w) [4].

    Ten candidate boxes are drawn at once; the first that fits is taken, else the centre crop
    with the aspect ratio clamped into `ratio`.
    """
    area_u, ratio_u = uniforms[:_CROP_TRIES], uniforms[_CROP_TRIES : 2 * _CROP_TRIES]
    top_u, left_u = uniforms[2 * _CROP_TRIES], uniforms[2 * _CROP_TRIES + 1]
    area = height * width * (scale[0] + (scale[1] - scale[0]) * area_u)  # [tries]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_lo + (log_hi - log_lo) * ratio_u)
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)  # [tries]
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    top = jnp.floor(top_u * (height - h[first] + 1)).astype(jnp.int32)
    left = jnp.floor(left_u * (width - w[first] + 1)).astype(jnp.int32)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_h, fallback_w = height, int(round(height * max(ratio)))
    else:
        fallback_w, fallback_h = width, height
    fallback = jnp.array(
        [(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w], jnp.int32
    )
    chosen = jnp.stack([top, left, h[first], w[first]])
    return jnp.where(jnp.any(fits), chosen, fallback)


def horizontal_flip(image: jax.Array, flip: jax.Array) -> jax.Array:
    return jnp.where(flip, image[:, ::-1], image)


# ----------------------------------------------------------------------------------------------
# Colour (images are float in [0, 1], [H, W, 3])


def grayscale(image: jax.Array) -> jax.Array:
    """[H, W, 3] -> [H, W, 1] luma."""
    return image @ jnp.asarray(_LUMA, image.dtype)[:, None]


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, grayscale(image), factor)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
    """[..., 3] RGB in [0, 1] -> HSV with hue in [0, 1) (torchvision's formulas)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    max_c = jnp.max(image, axis=-1)
    min_c = jnp.min(image, axis=-1)
    chroma = max_c - min_c
    safe_chroma = jnp.where(chroma == 0, 1.0, chroma)
    saturation = chroma / jnp.where(max_c == 0, 1.0, max_c)
    rc, gc, bc = ((max_c - c) / safe_chroma for c in (r, g, b))
    hue = jnp.where(max_c == r, bc - gc, jnp.where(max_c == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = jnp.where(chroma == 0, 0.0, hue)
    hue = jnp.mod(hue / 6.0, 1.0)
    return jnp.stack([hue, saturation, max_c], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """[..., 3] HSV -> RGB, as the closed form c = v - v*s*clip(min(k, 4 - k), 0, 1) with
    k = (n + 6h) mod 6 and n = 5, 3, 1 for R, G, B (the same values as the six-sector table)."""
    h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    k = jnp.mod(jnp.asarray([5.0, 3.0, 1.0], hsv.dtype) + 6.0 * h, 6.0)  # [..., 3]
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
    hsv = rgb_to_hsv(image)
    hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
    return hsv_to_rgb(hsv)


def color_jitter(
    image: jax.Array, uniforms: jax.Array, cfg: ml_collections.ConfigDict
) -> jax.Array:
    """torchvision ColorJitter from U[0, 1) draws [8]: factors ~ U[max(0, 1-s), 1+s] (hue shift
    ~ U[-h, h]), the operations in a random order. An operation of strength 0 is left out at
    trace time."""
    ops = []
    for u, strength, fn in (
        (uniforms[0], cfg.brightness, adjust_brightness),
        (uniforms[1], cfg.contrast, adjust_contrast),
        (uniforms[2], cfg.saturation, adjust_saturation),
    ):
        if strength > 0:
            low = max(0.0, 1.0 - strength)
            ops.append(functools.partial(fn, factor=low + (1.0 + strength - low) * u))
    if cfg.hue > 0:
        ops.append(functools.partial(adjust_hue, shift=cfg.hue * (2.0 * uniforms[3] - 1.0)))
    if not cfg.color_jitter_random_order or len(ops) <= 1:
        for op in ops:
            image = op(image)
        return image
    order = jnp.argsort(uniforms[4 : 4 + len(ops)])  # a uniformly random permutation
    # A loop keeps one copy of each operation in the program (an unrolled loop of switches would
    # hold len(ops)^2 of them, and under vmap a switch evaluates every branch anyway).
    return jax.lax.fori_loop(
        0, len(ops), lambda slot, x: jax.lax.switch(order[slot], ops, x), image
    )


# ----------------------------------------------------------------------------------------------
# Blur


def blur_kernel_size(image_width: int, fraction: float) -> int:
    """Odd kernel width, at least 3 (torchvision's SimCLR recipe: 10% of the image)."""
    size = max(3, int(round(fraction * image_width)))
    return size if size % 2 else size + 1


def gaussian_blur(image: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur with reflect padding (as torchvision). [H, W, C] -> [H, W, C].

    The kernel width is static, sigma may be traced; the blur is a sum of shifted copies, which
    vectorises over a batch with per-example sigmas.
    """
    radius = kernel_size // 2
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    weights = (weights / jnp.sum(weights)).astype(image.dtype)  # [K]

    def blur_axis(x: jax.Array, axis: int) -> jax.Array:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = jnp.pad(x, pad, mode="reflect")
        length = x.shape[axis]
        return sum(
            weights[t] * jax.lax.slice_in_dim(padded, t, t + length, axis=axis)
            for t in range(kernel_size)
        )

    return blur_axis(blur_axis(image, 0), 1)


# ----------------------------------------------------------------------------------------------
# One view, a batch of views


def _split_draws(uniforms: jax.Array) -> dict[str, jax.Array]:
    """[_NUM_DRAWS] -> {transform: its slice}."""
    out, start = {}, 0
    for name, count in _DRAW_SLOTS:
        out[name] = uniforms[start : start + count]
        start += count
    return out


def augment_view(
    image: jax.Array,
    key: jax.Array,
    level: int,
    cfg: ml_collections.ConfigDict,
    out_size: int | tuple[int, int] | None = None,
) -> jax.Array:
    """uint8 [H, W, 3] -> float32 [h, w, 3]: the transforms of `level`, then normalisation.

    `out_size` defaults to the input size; without a crop the image is resized to it.
    """
    active = ladder_levels(cfg)[level]
    in_h, in_w = image.shape[:2]
    out_h, out_w = _as_size(out_size) if out_size is not None else (in_h, in_w)
    draws = _split_draws(jax.random.uniform(key, (_NUM_DRAWS,)))
    x = image.astype(jnp.float32) / 255.0  # [H, W, 3] in [0, 1]

    if "crop" in active:
        box = random_resized_crop_box(draws["crop"], in_h, in_w, cfg.crop_scale, cfg.crop_ratio)
        x = crop_and_resize(x, box, (out_h, out_w))
    elif (in_h, in_w) != (out_h, out_w):
        x = jax.image.resize(x, (out_h, out_w, 3), "linear", antialias=True)
    if "flip" in active:
        x = horizontal_flip(x, draws["flip"][0] < cfg.flip_prob)
    if "color_jitter" in active:
        jittered = color_jitter(x, draws["color_jitter"][1:], cfg)
        x = jnp.where(draws["color_jitter"][0] < cfg.color_jitter_prob, jittered, x)
    if "grayscale" in active:
        gray = jnp.broadcast_to(grayscale(x), x.shape)
        x = jnp.where(draws["grayscale"][0] < cfg.grayscale_prob, gray, x)
    if "blur" in active:
        apply_u, sigma_u = draws["blur"]
        sigma = cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * sigma_u
        blurred = gaussian_blur(x, sigma, blur_kernel_size(out_w, cfg.blur_kernel_fraction))
        x = jnp.where(apply_u < cfg.blur_prob, blurred, x)
    return normalise_imagenet(x) if cfg.normalise else x


def normalise_imagenet(image: jax.Array) -> jax.Array:
    """[..., 3] in [0, 1] -> (x - mean) / std per channel."""
    return (image - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def augment_views(
    views: jax.Array,
    keys: jax.Array,
    cfg: ml_collections.ConfigDict,
    out_size: int | tuple[int, int] | None = None,
) -> jax.Array:
    """uint8 [B, m, H, W, 3] with one key per example [B, 2] -> float32 [B, m, h, w, 3].

    View j uses level `view_levels(m, cfg)[j]` and the key fold_in(key, j). Pass the examples'
    `stream_keys(keys, IMAGES)` so the images do not reuse the points' randomness.
    """
    levels = view_levels(views.shape[1], cfg)
    out = []
    for j, level in enumerate(levels):
        view_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, j)  # [B, 2]
        one_view = functools.partial(augment_view, level=level, cfg=cfg, out_size=out_size)
        out.append(jax.vmap(one_view)(views[:, j], view_keys))  # [B, h, w, 3]
    return jnp.stack(out, axis=1)
