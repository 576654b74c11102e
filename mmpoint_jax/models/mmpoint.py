"""The joint MM-Point / CrossPoint model: both towers and all projection heads in one apply.

Model config (`default_model_config`, the `model` section of the configs in `configs/`):

  mode               'mmpoint' (m views, Multi-MLP: h_0 for 3D-3D, one head pair (h_j, k_j) per
                     view) or 'crosspoint' (m = 1, one 3D head shared by intra and inter, one
                     image head).
  num_views          m.
  point_encoder      tower config (models/build.py), DGCNN k=20, emb_dims=1024 by default.
  image_encoder      tower config, ResNet-50 (random init) by default.
  point_head_hidden  hidden width of the 3D heads (1024 = emb_dims, as the references).
  image_head_hidden  hidden width of the image heads (512, as the references).
  head_dims          mmpoint: (d_0, d_1, ..., d_m): d_0 for h_0, d_j for the pair h_j / k_j;
                     or (d_0, d): every view's pair has width d, whatever m is (the default,
                     so that sweeping `model.num_views` needs no other change).
                     crosspoint: (d,), the shared 3D head and the image head.

Defaults and why: the released MM-Point DGCNN carries exactly two 3D heads, `inv_head`
(2048-1024-512) and `inv_head1` (2048-1024-128) (its evaluation notebook loads it with every key
matched); we take d_0 = 512 for the 3D-3D head and d_j = 128 for every view's pair, which is that
release with m pairs. CrossPoint uses 256 for both its heads.

Batching follows the references where it changes numbers: the two augmented clouds go through
the 3D encoder and heads as one batch of 2B (CrossPoint concatenates them, so BatchNorm sees
both), stacked per example ([B, 2] -> [2B]) so that a batch sharded over `data` stays local.
The m views go through the ResNet as one batch of B*m (one BatchNorm population over all views;
each image head k_j then normalises its own view).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mmpoint_jax.models.build import (
    build_image_encoder,
    build_point_encoder,
    default_image_encoder_config,
    default_point_encoder_config,
)
from mmpoint_jax.models.heads import ProjectionHeads

MODES = ("mmpoint", "crosspoint")
MMPOINT_INTRA_DIM = 512  # released MM-Point inv_head
MMPOINT_VIEW_DIM = 128  # released MM-Point inv_head1
CROSSPOINT_DIM = 256


def default_model_config(
    mode: str = "mmpoint",
    num_views: int = 3,
    point_encoder: str = "dgcnn",
    image_encoder: str = "resnet50",
) -> ml_collections.ConfigDict:
    """The `model` config section (fields documented in the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"model.mode must be one of {MODES}, got {mode!r}")
    if mode == "crosspoint":
        if num_views != 1:
            raise ValueError(f"crosspoint mode has one view, got num_views={num_views}")
        head_dims = (CROSSPOINT_DIM,)
    else:
        head_dims = (MMPOINT_INTRA_DIM, MMPOINT_VIEW_DIM)
    return ml_collections.ConfigDict(
        {
            "mode": mode,
            "num_views": num_views,
            "point_encoder": default_point_encoder_config(point_encoder),
            "image_encoder": default_image_encoder_config(image_encoder),
            "point_head_hidden": 1024,
            "image_head_hidden": 512,
            "head_dims": head_dims,
        }
    )


def head_layout(cfg: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(3D head dims, image head dims) of a model config, checked against mode and num_views."""
    mode, m, dims = cfg["mode"], int(cfg["num_views"]), tuple(int(d) for d in cfg["head_dims"])
    if mode not in MODES:
        raise ValueError(f"model.mode must be one of {MODES}, got {mode!r}")
    if mode == "crosspoint":
        if m != 1 or len(dims) != 1:
            raise ValueError(
                f"crosspoint mode needs num_views=1 and one head dim, got {m} and {dims}"
            )
        return dims, dims
    if len(dims) == 2:  # (d_0, d): one width for every view's pair
        dims = (dims[0],) + (dims[1],) * m
    if m < 1 or len(dims) != m + 1:
        raise ValueError(
            f"mmpoint mode needs head_dims (d_0, d_1..d_m) = {m + 1} values or (d_0, d), got {dims}"
        )
    return dims, dims[1:]


class MMPoint(nn.Module):
    """Call: points1, points2 [B, N, 3], views [B, m, H, W, 3] float32 (normalised), train.

    Returns a dict:
      point_feature1, point_feature2   [B, F] global features of the two clouds
      intra1, intra2                   [B, d_0] head h_0 on each cloud
      point_view_embeddings            m arrays [B, d_j]: h_j(P), mean over the two clouds
                                       (crosspoint: the shared head's mean)
      image_view_embeddings            m arrays [B, d_j]: k_j(g(I_j))
    Variables: params / batch_stats with subtrees point_encoder, image_encoder, point_heads,
    image_heads (checkpointing.py cuts the towers out by those names).
    """

    config: Any

    def setup(self):
        point_dims, image_dims = head_layout(self.config)
        self.point_encoder = build_point_encoder(self.config["point_encoder"])
        self.image_encoder = build_image_encoder(self.config["image_encoder"])
        self.point_heads = ProjectionHeads(
            int(self.config["point_head_hidden"]), point_dims, use_bias=True
        )
        self.image_heads = ProjectionHeads(
            int(self.config["image_head_hidden"]), image_dims, use_bias=False
        )

    def __call__(
        self, points1: jax.Array, points2: jax.Array, views: jax.Array, train: bool
    ) -> dict[str, Any]:
        batch, num_views = views.shape[0], views.shape[1]
        if num_views != int(self.config["num_views"]):
            raise ValueError(
                f"model has num_views={self.config['num_views']}, views has {num_views}"
            )
        if points1.shape != points2.shape or points1.shape[0] != batch:
            raise ValueError(
                f"points1 {points1.shape}, points2 {points2.shape}, views {views.shape} disagree"
            )
        clouds = jnp.stack([points1, points2], axis=1).reshape(
            2 * batch, *points1.shape[1:]
        )  # [2B, N, 3]
        features, _ = self.point_encoder(clouds, train)  # [2B, F]
        point_embeddings = [
            e.reshape(batch, 2, -1) for e in self.point_heads(features, train)
        ]  # each [B, 2, d_j]
        images = views.reshape(batch * num_views, *views.shape[2:])  # [B*m, H, W, 3]
        image_features = self.image_encoder(images, train).reshape(
            batch, num_views, -1
        )  # [B, m, G]
        image_embeddings = self.image_heads([image_features[:, j] for j in range(num_views)], train)
        per_view = point_embeddings if self.config["mode"] == "crosspoint" else point_embeddings[1:]
        features = features.reshape(batch, 2, -1)
        return {
            "point_feature1": features[:, 0],
            "point_feature2": features[:, 1],
            "intra1": point_embeddings[0][:, 0],
            "intra2": point_embeddings[0][:, 1],
            "point_view_embeddings": tuple(jnp.mean(e, axis=1) for e in per_view),
            "image_view_embeddings": tuple(image_embeddings),
        }
