"""DGCNN segmentation networks for fine-tuning: part segmentation (ShapeNetPart) and semantic
segmentation (S3DIS), built around the very `point_encoder` that pretraining trains.

The references (WangYueFt/dgcnn `DGCNN_partseg` / `DGCNN_semseg`, CrossPoint's copy of the
former) use their own trunks of three EdgeConv blocks with two 1x1 convolutions each, so a
pretrained classification DGCNN cannot be loaded into them. Here the trunk *is* the pretraining
encoder (four single-convolution EdgeConv layers, `conv5` to `emb_dims`: `models/dgcnn.py`), so
every pretrained encoder variable has a place, and the parts around it follow the references:

* **global feature**: max over points of the encoder's per-point output (`emb_dims`; the
  references max-pool their `conv6` the same way; no average pool here).
* **part seg only**: the 16-d category one-hot through `category` (Linear 16->64 without bias,
  BN, LeakyReLU: the reference's `conv7`), and optionally `transform_net`, DGCNN's spatial
  transformer on the xyz kNN graph (conv 6->64->128 on edges, max over k, conv 128->1024, max over
  points, 1024->512->256, then a 3x3 matrix). It starts as the identity (zero kernel, identity
  bias, as the reference), so a pretrained encoder sees its own input distribution at step 0.
* **per-point head**: [global, category embedding] broadcast to every point, concatenated with
  the encoder's EdgeConv outputs (`layer_features`) -> `head` = shared Linear-BN-LeakyReLU layers
  with dropout after the chosen ones -> a bias-free linear layer to the classes. Reference widths:
  part seg 256-256-128 with dropout after the first two (input emb + 64 + sum(widths) = 1600
  channels for the default encoder, 1280 in the reference); sem seg 512-256 with dropout after
  the second (input emb + sum(widths)).
* **sem seg**: the first kNN graph is built on `graph_channels` of the input (DGCNN: the
  normalised room coordinates, channels 6-8) rather than on all 9 channels.

Variables: params / batch_stats subtrees `point_encoder`, `transform_net` (part seg, optional),
`category` (part seg) and `head`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmpoint_jax.models.build import build_point_encoder
from mmpoint_jax.models.dgcnn import DGCNN, edge_features, knn
from mmpoint_jax.models.layers import BatchNorm, Linear, compute_dtype, leaky_relu

PART_SEG_HEAD = {"head_widths": (256, 256, 128), "dropout_after": (0, 1)}
SEM_SEG_HEAD = {"head_widths": (512, 256), "dropout_after": (1,)}
CATEGORY_FEATURES = 64


class SharedMLP(nn.Module):
    """Linear (no bias) - BN - LeakyReLU(0.2) on the last axis: a 1x1 conv + BN + activation."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = Linear(self.features, use_bias=False, dtype=self.dtype, name="linear")(x)
        return leaky_relu(BatchNorm(dtype=self.dtype, name="bn")(x, train))


def _identity_bias(key, shape, dtype=jnp.float32):
    del key
    return jnp.eye(3, dtype=dtype).reshape(shape)


class TransformNet(nn.Module):
    """DGCNN's spatial transformer: xyz [B, N, 3] and its kNN graph [B, N, k] -> [B, 3, 3]."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, xyz: jax.Array, idx: jax.Array, train: bool) -> jax.Array:
        x = edge_features(xyz.astype(self.dtype), idx)  # [B, N, k, 6]
        x = SharedMLP(64, self.dtype, name="conv1")(x, train)  # [B, N, k, 64]
        x = SharedMLP(128, self.dtype, name="conv2")(x, train)  # [B, N, k, 128]
        x = jnp.max(x, axis=2)  # [B, N, 128]
        x = SharedMLP(1024, self.dtype, name="conv3")(x, train)  # [B, N, 1024]
        x = jnp.max(x, axis=1)  # [B, 1024]
        x = SharedMLP(512, self.dtype, name="linear1")(x, train)
        x = SharedMLP(256, self.dtype, name="linear2")(x, train)  # [B, 256]
        kernel = self.param("kernel", nn.initializers.zeros, (256, 9), jnp.float32)
        bias = self.param("bias", _identity_bias, (9,), jnp.float32)
        matrix = x.astype(jnp.float32) @ kernel + bias  # [B, 9]
        return matrix.reshape(-1, 3, 3)


class SegmentationHead(nn.Module):
    """Per-point features [B, N, C] -> logits [B, N, num_classes] (float32)."""

    num_classes: int
    widths: Sequence[int]
    dropout_after: Sequence[int]
    dropout: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for layer, width in enumerate(self.widths):
            x = SharedMLP(width, self.dtype, name=f"conv{layer}")(x, train)
            if layer in self.dropout_after:
                # one mask per point and channel, as nn.Dropout after a Conv1d
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = Linear(self.num_classes, use_bias=False, dtype=self.dtype, name="logits")(x)
        return logits.astype(jnp.float32)


class DGCNNSegmentation(nn.Module):
    """points [B, N, C] (+ category [B] int for part seg) -> per-point logits [B, N, classes].

    `encoder` is a point-encoder config (models/build.py, `name='dgcnn'`); the input channel
    count C comes from the data (3 for ShapeNetPart, 9 for S3DIS). `num_categories` > 0 makes it
    the part-seg network (the call then needs `category`).
    """

    encoder: Any
    num_classes: int
    num_categories: int = 0
    use_transform_net: bool = False
    graph_channels: Sequence[int] = ()
    head_widths: Sequence[int] = PART_SEG_HEAD["head_widths"]
    dropout_after: Sequence[int] = PART_SEG_HEAD["dropout_after"]
    dropout: float = 0.5

    def setup(self):
        if self.encoder["name"] != "dgcnn":
            raise ValueError(
                f"segmentation needs the DGCNN encoder (per-point layer features), "
                f"got point_encoder.name={self.encoder['name']!r}"
            )
        self.point_encoder: DGCNN = build_point_encoder(self.encoder)
        dtype = compute_dtype(self.point_encoder.dtype)
        if self.use_transform_net:
            self.transform_net = TransformNet(dtype)
        if self.num_categories:
            self.category = SharedMLP(CATEGORY_FEATURES, dtype)
        self.head = SegmentationHead(
            self.num_classes, self.head_widths, self.dropout_after, self.dropout, dtype
        )

    def __call__(
        self, points: jax.Array, train: bool, category: jax.Array | None = None
    ) -> jax.Array:
        if self.num_categories and category is None:
            raise ValueError("the part-seg network needs each shape's category")
        num_points = points.shape[1]
        if self.use_transform_net:
            xyz = points[..., :3]  # [B, N, 3]
            transform = self.transform_net(xyz, knn(xyz, self.point_encoder.k), train)  # [B, 3, 3]
            moved = jnp.einsum("bnc,bcd->bnd", xyz, transform.astype(xyz.dtype))
            points = jnp.concatenate([moved, points[..., 3:]], axis=-1)
        graph = points[..., tuple(self.graph_channels)] if self.graph_channels else None
        _, extras = self.point_encoder(points, train, graph_points=graph)
        shape_parts = [jnp.max(extras["point_features"], axis=1)]  # [B, emb_dims]
        if self.num_categories:
            one_hot = jax.nn.one_hot(category, self.num_categories, dtype=points.dtype)  # [B, 16]
            shape_parts.append(self.category(one_hot, train))  # [B, 64]
        shape_feature = jnp.concatenate(shape_parts, axis=-1)  # [B, S]
        per_shape = jnp.broadcast_to(
            shape_feature[:, None, :].astype(extras["point_features"].dtype),
            (shape_feature.shape[0], num_points, shape_feature.shape[-1]),
        )  # [B, N, S]
        features = jnp.concatenate([per_shape, *extras["layer_features"]], axis=-1)
        return self.head(features, train)  # [B, N, classes]


def part_segmentation_net(
    encoder: Any,
    num_parts: int = 50,
    num_categories: int = 16,
    transform_net: bool = True,
    dropout: float = 0.5,
) -> DGCNNSegmentation:
    """The part-seg network (ShapeNetPart: 50 parts, 16 categories), head 256-256-128."""
    return DGCNNSegmentation(
        encoder,
        num_classes=num_parts,
        num_categories=num_categories,
        use_transform_net=transform_net,
        dropout=dropout,
        **PART_SEG_HEAD,
    )


def semantic_segmentation_net(
    encoder: Any,
    num_classes: int = 13,
    graph_channels: Sequence[int] = (6, 7, 8),
    dropout: float = 0.5,
) -> DGCNNSegmentation:
    """The sem-seg network (S3DIS: 13 classes, first graph on channels 6-8), head 512-256."""
    return DGCNNSegmentation(
        encoder,
        num_classes=num_classes,
        graph_channels=tuple(graph_channels),
        dropout=dropout,
        **SEM_SEG_HEAD,
    )
