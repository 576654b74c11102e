"""Point-cloud augmentations of CrossPoint's pretraining (DATA_FORMATS.md B6), in pure JAX.

The chain, each step switchable in the config and each with a strength that makes it the
identity at zero: normalise (centre, unit sphere) -> isotropic scale s ~ U[lo, hi] -> rotation
about +Y by U[0, max_angle) -> translation of U[-f, f] x the current bounding-box extent per axis
-> jitter N(0, sigma^2) clipped to +-clip -> random input dropout (ratio r ~ U[0, max_ratio); each
point whose uniform draw is below r becomes point 0, the point count stays N).

`augment_point_cloud(points [N,3], key, cfg)` handles one cloud; `augment_points` vmaps it over a
batch with one key per example. The config is read at trace time (plain Python values).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

# The config switches, in the order the chain applies them.
STEPS = ("normalise", "scale", "rotate", "translate", "jitter", "dropout")
_EPS = 1e-12


def default_point_aug_config() -> ml_collections.ConfigDict:
    """CrossPoint's pretraining values (DATA_FORMATS.md B6); embed as `config.augment.points`."""
    return ml_collections.ConfigDict(
        dict(
            normalise=True,
            scale=True,
            scale_low=0.5,  # scale 1 .. 1 is the identity
            scale_high=2.0,
            rotate=True,
            max_angle=2 * math.pi,  # about +Y (the up axis of ShapeNet / ModelNet40 h5)
            translate=True,
            translate_fraction=0.5,  # of the bounding-box extent per axis
            jitter=True,
            jitter_sigma=0.01,
            jitter_clip=0.05,
            dropout=True,
            dropout_max_ratio=0.875,
        )
    )


def normalise(points: jax.Array) -> jax.Array:
    """Centre on the centroid and scale the farthest point to norm 1. [N, 3] -> [N, 3]."""
    centred = points - jnp.mean(points, axis=0, keepdims=True)
    radius = jnp.max(jnp.linalg.norm(centred, axis=-1))
    return centred / jnp.maximum(radius, _EPS)


def rotation_about_y(angle: jax.Array) -> jax.Array:
    """Rodrigues' rotation matrix [3, 3] about the unit axis (0, 1, 0)."""
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    zero, one = jnp.zeros_like(angle), jnp.ones_like(angle)
    return jnp.stack(
        [
            jnp.stack([cos, zero, sin]),
            jnp.stack([zero, one, zero]),
            jnp.stack([-sin, zero, cos]),
        ]
    )


def rotate(points: jax.Array, angle: jax.Array) -> jax.Array:
    """Rotates about +Y as CrossPoint does (points @ R^T). [N, 3] -> [N, 3]."""
    return points @ rotation_about_y(angle).T.astype(points.dtype)


def translate(points: jax.Array, fractions: jax.Array) -> jax.Array:
    """Shifts each axis by `fractions` [3] times the cloud's current extent on that axis."""
    extent = jnp.max(points, axis=0) - jnp.min(points, axis=0)  # [3]
    return points + fractions * extent


def jitter(points: jax.Array, noise: jax.Array, clip: float) -> jax.Array:
    return points + jnp.clip(noise, -clip, clip)


def input_dropout(points: jax.Array, draws: jax.Array, ratio: jax.Array) -> jax.Array:
    """Points whose uniform draw [N] is below `ratio` become point 0 (the count stays N)."""
    dropped = draws < ratio  # '<' so that ratio 0 is exactly the identity
    return jnp.where(dropped[:, None], points[0], points)


def augment_point_cloud(
    points: jax.Array, key: jax.Array, cfg: ml_collections.ConfigDict
) -> jax.Array:
    """One cloud [N, 3] -> its augmented copy [N, 3] (same dtype)."""
    dtype = points.dtype
    num_points = points.shape[0]
    uniform_key, normal_key = jax.random.split(key)
    # Two PRNG calls for the whole chain (fast to compile); each step owns fixed slots of them,
    # so switching a step off leaves the draws of the others unchanged.
    u = jax.random.uniform(uniform_key, (6 + num_points,), dtype)
    if cfg.normalise:
        points = normalise(points)
    if cfg.scale:
        points = points * (cfg.scale_low + (cfg.scale_high - cfg.scale_low) * u[0])
    if cfg.rotate:
        points = rotate(points, cfg.max_angle * u[1])
    if cfg.translate:
        points = translate(points, cfg.translate_fraction * (2.0 * u[2:5] - 1.0))
    if cfg.jitter:
        noise = cfg.jitter_sigma * jax.random.normal(normal_key, (num_points, 3), dtype)
        points = jitter(points, noise, cfg.jitter_clip)
    if cfg.dropout:
        points = input_dropout(points, u[6:], cfg.dropout_max_ratio * u[5])
    return points


def augment_points(points: jax.Array, keys: jax.Array, cfg: ml_collections.ConfigDict) -> jax.Array:
    """A batch [B, N, 3] with one key per example (raw [B, 2] or typed [B]) -> [B, N, 3]."""
    return jax.vmap(functools.partial(augment_point_cloud, cfg=cfg))(points, keys)
