"""Per-example PRNG keys: the one place augmentation randomness comes from.

An example's key is `fold_in(fold_in(PRNGKey(seed), step), index)`, with `index` its position in
the global stream (`PretrainPipeline` batches carry it as `index`). The key therefore depends on
neither the number of hosts nor the number of devices that handle the example, and it needs no
checkpointing. Each use of the key (first point view, second point view, images) folds in its own
stream tag, so the two augmented clouds of the intra-modal loss are independent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Stream tags folded into an example's key, one per independent use.
POINTS_FIRST = 0
POINTS_SECOND = 1
IMAGES = 2


def example_keys(seed: int, step, index) -> jax.Array:
    """uint32 keys [B, 2] for the examples at global stream positions `index` [B] of `step`.

    Works inside jit (`step` and `index` may be traced). Positions must be < 2**32.
    """
    step_key = jax.random.fold_in(jax.random.PRNGKey(seed), jnp.asarray(step).astype(jnp.uint32))
    index = jnp.asarray(index).astype(jnp.uint32)  # [B]
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, index)


def stream_keys(keys: jax.Array, stream: int) -> jax.Array:
    """Keys [B, 2] -> the keys of one use (`POINTS_FIRST`, `POINTS_SECOND`, `IMAGES`) [B, 2]."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, stream)
