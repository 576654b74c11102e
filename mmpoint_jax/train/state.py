"""The pretraining train state: what a checkpoint holds and a step updates."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 [], number of completed steps
    params: Any
    batch_stats: Any
    opt_state: Any
    # No RNG field: every random draw comes from (config seed, step, example's global index)
    # (augment/keys.py), so the RNG needs no checkpointing and does not depend on host count.
    # -1 while every loss so far was finite; else the first step whose loss was not, after which
    # the state stops changing so the last checkpoint stays good (see pretrain.py).
    nonfinite_step: jax.Array  # int32 []
    nonfinite_terms: jax.Array  # int32 [] bit i set: sorted loss term i was non-finite


def create(params: Any, batch_stats: Any, opt_state: Any) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_terms=jnp.zeros((), jnp.int32),
    )


def finite_bitmask(values: dict[str, jax.Array], names: list[str]) -> jax.Array:
    """int32 with bit i set when `values[names[i]]` is NaN or Inf."""
    bits = [jnp.where(jnp.isfinite(values[name]), 0, 1 << i) for i, name in enumerate(names)]
    return sum(bits, jnp.zeros((), jnp.int32)).astype(jnp.int32)


def decode_bitmask(mask: int, names: list[str]) -> list[str]:
    return [name for i, name in enumerate(names) if mask & (1 << i)]
