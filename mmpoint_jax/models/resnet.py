"""ResNet-18/34/50 image encoders in torchvision's layout (NHWC here), without the final fc.

Layout details that make imported torchvision weights give the same features: explicit
symmetric padding (torch pads 3x3/stride-2 convs by 1 on both sides; Flax 'SAME' would pad
(0, 1)), the stride on the 3x3 conv of the bottleneck (ResNet v1.5), a 1x1 conv + BN shortcut
when the shape changes, max-pool 3x3/2 padded with -inf, and torchvision's initialisation
(Kaiming normal, fan_out, for convs; BN scale 1, bias 0). `width` (64) scales every stage so
tests can run a narrow network with the real structure. Input images [B, H, W, 3] float32,
already normalised; any size (224 by default upstream). Output: [B, 8 * width * expansion].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmpoint_jax.models.layers import BatchNorm

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
torchvision_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=torchvision_conv_init,
        name=name,
    )


class ResidualBlock(nn.Module):
    """torchvision BasicBlock ('basic') or Bottleneck ('bottleneck'), named as in its state_dict."""

    planes: int
    stride: int
    kind: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out_channels = self.planes * EXPANSION[self.kind]
        if self.kind == "basic":
            convs = [(self.planes, 3, self.stride), (self.planes, 3, 1)]
        else:
            convs = [(self.planes, 1, 1), (self.planes, 3, self.stride), (out_channels, 1, 1)]
        y = x
        for i, (features, kernel, stride) in enumerate(convs, start=1):
            y = _conv(features, kernel, stride, self.dtype, f"conv{i}")(y)
            y = BatchNorm(dtype=self.dtype, name=f"bn{i}")(y, train)
            if i < len(convs):
                y = nn.relu(y)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != out_channels:
            shortcut = _conv(out_channels, 1, self.stride, self.dtype, "downsample_conv")(x)
            shortcut = BatchNorm(dtype=self.dtype, name="downsample_bn")(shortcut, train)
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """images [B, H, W, 3] -> global-average-pooled feature [B, 8 * width * expansion]."""

    depth: str = "resnet50"
    width: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        if self.depth not in RESNET_LAYOUTS:
            raise ValueError(
                f"image encoder must be one of {sorted(RESNET_LAYOUTS)}, got {self.depth!r}"
            )
        kind, blocks = RESNET_LAYOUTS[self.depth]
        x = _conv(self.width, 7, 2, self.dtype, "conv1")(
            images.astype(self.dtype)
        )  # [B, H/2, W/2, w]
        x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # [B, H/4, W/4, w]
        for stage, num_blocks in enumerate(blocks, start=1):
            planes = self.width * 2 ** (stage - 1)
            for block in range(num_blocks):
                stride = 2 if (stage > 1 and block == 0) else 1
                x = ResidualBlock(planes, stride, kind, self.dtype, name=f"layer{stage}_{block}")(
                    x, train
                )
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [B, 8 * width * expansion]
