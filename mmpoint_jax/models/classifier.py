"""The fine-tuning classifier: the pretraining point encoder + CrossPoint's classification head.

Variables: params / batch_stats subtrees `point_encoder` (exactly the pretraining tower, so a
pretrained encoder loads whole) and `classifier` (`ClassificationHead`: linear1 - bn6 - dropout -
linear2 - bn7 - dropout - linear3, 2048-512-256-C for the default DGCNN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from mmpoint_jax.models.build import build_point_encoder
from mmpoint_jax.models.dgcnn import ClassificationHead


class PointCloudClassifier(nn.Module):
    """points [B, N, 3] -> logits [B, num_classes] (float32); dropout needs the 'dropout' RNG."""

    encoder: Any  # point-encoder config (models/build.py): dgcnn or pointnet
    num_classes: int
    hidden: Sequence[int] = (512, 256)
    dropout: float = 0.5

    def setup(self):
        self.point_encoder = build_point_encoder(self.encoder)
        self.classifier = ClassificationHead(
            self.num_classes, tuple(self.hidden), self.dropout, self.point_encoder.dtype
        )

    def __call__(self, points: jax.Array, train: bool) -> jax.Array:
        feature, _ = self.point_encoder(points, train)  # [B, F]
        return self.classifier(feature, train)
