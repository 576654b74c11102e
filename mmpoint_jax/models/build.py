"""Encoder configs and builders: a tower's ConfigDict -> its Flax module, by `name`.

Point encoder configs (`name` picks the fields):
  dgcnn:    k (20), emb_dims (1024), widths ((64, 64, 128, 256)), edgeconv ('factorised' |
            'plain'), knn_method ('exact' | 'approx': lax.approx_max_k, for TPU), remat (False:
            recompute EdgeConv activations in the backward pass to save memory), dtype
            ('float32' | 'bfloat16': compute dtype; params, BN statistics and outputs stay float32).
  pointnet: emb_dims (1024), dtype.
Image encoder configs: name ('resnet18' | 'resnet34' | 'resnet50'), width (64), dtype,
            conv_impl ('auto': im2col matmuls for small output maps, XLA's convolution
            otherwise | 'xla' | 'im2col'; same parameters and numbers either way, see resnet.py).

These dicts are what encoder exports store as `model` (train/checkpointing.py), so an export
rebuilds its network with `build_point_encoder(restored.model)`. Unknown keys are errors: a
misspelt field must not silently fall back to a default.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import ml_collections

from mmpoint_jax.models.dgcnn import DGCNN
from mmpoint_jax.models.layers import compute_dtype
from mmpoint_jax.models.pointnet import PointNet
from mmpoint_jax.models.resnet import RESNET_LAYOUTS, ResNet

POINT_ENCODER_DEFAULTS = {
    "dgcnn": {
        "k": 20,
        "emb_dims": 1024,
        "widths": (64, 64, 128, 256),
        "edgeconv": "factorised",
        "knn_method": "exact",
        "remat": False,
        "dtype": "float32",
    },
    "pointnet": {"emb_dims": 1024, "dtype": "float32"},
}
IMAGE_ENCODER_DEFAULTS = {"width": 64, "dtype": "float32", "conv_impl": "auto"}


def default_point_encoder_config(
    name: str = "dgcnn", **overrides: Any
) -> ml_collections.ConfigDict:
    return _default_config(name, POINT_ENCODER_DEFAULTS, overrides, "point_encoder")


def default_image_encoder_config(
    name: str = "resnet50", **overrides: Any
) -> ml_collections.ConfigDict:
    defaults = {depth: IMAGE_ENCODER_DEFAULTS for depth in RESNET_LAYOUTS}
    return _default_config(name, defaults, overrides, "image_encoder")


def _default_config(
    name: str, defaults_by_name: dict, overrides: dict, where: str
) -> ml_collections.ConfigDict:
    """{'name': name, **defaults, **overrides}; unknown names or fields are errors."""
    if name not in defaults_by_name:
        raise ValueError(f"{where}.name must be one of {sorted(defaults_by_name)}, got {name!r}")
    base = {"name": name, **defaults_by_name[name]}
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(base)}")
    return ml_collections.ConfigDict({**base, **overrides})


def _resolved(cfg: Any, defaults: dict, where: str) -> dict:
    """Tower config (ConfigDict or dict) merged over the defaults; unknown keys raise."""
    given = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    name = given.pop("name", None)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{where} '{name}': unknown field(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def build_point_encoder(cfg: Any) -> nn.Module:
    """`__call__(points [B, N, C], train) -> (global feature, extras)`; see module docstring."""
    name = cfg["name"]
    if name not in POINT_ENCODER_DEFAULTS:
        raise ValueError(
            f"point_encoder.name must be one of {sorted(POINT_ENCODER_DEFAULTS)}, got {name!r}"
        )
    c = _resolved(cfg, POINT_ENCODER_DEFAULTS[name], "point_encoder")
    dtype = compute_dtype(c["dtype"])
    if name == "pointnet":
        return PointNet(emb_dims=int(c["emb_dims"]), dtype=dtype)
    return DGCNN(
        k=int(c["k"]),
        emb_dims=int(c["emb_dims"]),
        widths=tuple(int(w) for w in c["widths"]),
        edgeconv=c["edgeconv"],
        knn_method=c["knn_method"],
        remat=bool(c["remat"]),
        dtype=dtype,
    )


def build_image_encoder(cfg: Any) -> nn.Module:
    """`__call__(images [B, H, W, 3] float32 normalised, train) -> feature [B, 512 | 2048]`."""
    name = cfg["name"]
    if name not in RESNET_LAYOUTS:
        raise ValueError(
            f"image_encoder.name must be one of {sorted(RESNET_LAYOUTS)}, got {name!r}"
        )
    c = _resolved(cfg, IMAGE_ENCODER_DEFAULTS, "image_encoder")
    return ResNet(
        depth=name, width=int(c["width"]), dtype=compute_dtype(c["dtype"]), conv_impl=c["conv_impl"]
    )


def point_feature_dim(cfg: Any) -> int:
    """Width of the point encoder's global feature: 2 * emb_dims (DGCNN) or emb_dims (PointNet)."""
    emb = int(cfg.get("emb_dims", POINT_ENCODER_DEFAULTS[cfg["name"]]["emb_dims"]))
    return 2 * emb if cfg["name"] == "dgcnn" else emb


def image_feature_dim(cfg: Any) -> int:
    kind, _ = RESNET_LAYOUTS[cfg["name"]]
    width = int(cfg.get("width", IMAGE_ENCODER_DEFAULTS["width"]))
    return 8 * width * (4 if kind == "bottleneck" else 1)
