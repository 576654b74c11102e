"""Models of MM-Point: point encoders (DGCNN, PointNet), ResNet image encoders, projection heads,
the joint MMPoint model, and PyTorch-compatible building blocks (kNN, EdgeConv, BatchNorm).

Build towers from config with `build_point_encoder(cfg)` / `build_image_encoder(cfg)`; the joint
model is `MMPoint(default_model_config(...))`. `numpy_reference` holds plain numpy versions of the
PyTorch networks that tests and the importer check against.
"""

from mmpoint_jax.models.build import (
    build_image_encoder,
    build_point_encoder,
    default_image_encoder_config,
    default_point_encoder_config,
    image_feature_dim,
    point_feature_dim,
)
from mmpoint_jax.models.dgcnn import (
    DGCNN,
    ClassificationHead,
    EdgeConv,
    edge_features,
    gather_neighbours,
    knn,
)
from mmpoint_jax.models.heads import ProjectionHead, ProjectionHeads
from mmpoint_jax.models.layers import BatchNorm, Linear
from mmpoint_jax.models.mmpoint import MMPoint, default_model_config, head_layout
from mmpoint_jax.models.pointnet import PointNet
from mmpoint_jax.models.resnet import ResNet

__all__ = [
    "DGCNN",
    "BatchNorm",
    "ClassificationHead",
    "EdgeConv",
    "Linear",
    "MMPoint",
    "PointNet",
    "ProjectionHead",
    "ProjectionHeads",
    "ResNet",
    "build_image_encoder",
    "build_point_encoder",
    "default_image_encoder_config",
    "default_model_config",
    "default_point_encoder_config",
    "edge_features",
    "gather_neighbours",
    "head_layout",
    "image_feature_dim",
    "knn",
    "point_feature_dim",
]
