"""Projection heads: Linear - BN - ReLU - Linear, and the Multi-MLP set of them.

The 3D heads of CrossPoint / MM-Point have biases (`inv_head` = Linear(2048, 1024), BN, ReLU,
Linear(1024, d)); the image head has none (Linear(2048, 512, bias=False), BN, ReLU,
Linear(512, d, bias=False)). Heads compute in float32: they are tiny and feed the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmpoint_jax.models.layers import BatchNorm, Linear


class ProjectionHead(nn.Module):
    """x [B, F] -> [B, features]; names `linear1`, `bn`, `linear2` (PyTorch's inv_head.0/.1/.3)."""

    hidden: int
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = Linear(self.hidden, use_bias=self.use_bias, name="linear1")(x.astype(jnp.float32))
        x = nn.relu(BatchNorm(name="bn")(x, train))
        return Linear(self.features, use_bias=self.use_bias, name="linear2")(x)


class ProjectionHeads(nn.Module):
    """Several heads `head_0 .. head_{n-1}`, one per latent space (Multi-MLP), widths `dims`.

    `inputs` is one array fed to every head, or a sequence with one array per head (image heads:
    view j's features go to head j). Returns a tuple of [B, dims[j]] arrays.
    """

    hidden: int
    dims: Sequence[int]
    use_bias: bool = True

    @nn.compact
    def __call__(
        self, inputs: jax.Array | Sequence[jax.Array], train: bool
    ) -> tuple[jax.Array, ...]:
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs] * len(self.dims)
        if len(inputs) != len(self.dims):
            raise ValueError(f"{len(self.dims)} heads but {len(inputs)} inputs")
        return tuple(
            ProjectionHead(self.hidden, dim, self.use_bias, name=f"head_{j}")(x, train)
            for j, (x, dim) in enumerate(zip(inputs, self.dims, strict=True))
        )
