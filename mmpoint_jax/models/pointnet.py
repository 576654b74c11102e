"""PointNet encoder as the DGCNN repository's `PointNet` (the one CrossPoint's PointNet runs use).

Shared per-point MLP 3 -> 64 -> 64 -> 64 -> 128 -> emb_dims (1x1 convs without bias, BatchNorm,
ReLU), then max-pool over points. No T-Net: that reference has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmpoint_jax.models.layers import BatchNorm, Linear


class PointNet(nn.Module):
    """points [B, N, C] -> (global feature [B, emb_dims], {'point_features': [B, N, emb_dims]})."""

    emb_dims: int = 1024
    widths: Sequence[int] = (64, 64, 64, 128)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array, train: bool) -> tuple[jax.Array, dict[str, Any]]:
        x = points.astype(self.dtype)  # [B, N, C]
        for layer, width in enumerate((*self.widths, self.emb_dims), start=1):
            x = Linear(width, use_bias=False, dtype=self.dtype, name=f"conv{layer}")(x)
            x = nn.relu(BatchNorm(dtype=self.dtype, name=f"bn{layer}")(x, train))
        return jnp.max(x, axis=1).astype(jnp.float32), {"point_features": x}
