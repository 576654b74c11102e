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

from mmpoint_jax.models.layers import BatchNorm, dense

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
torchvision_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


# Output maps with at most this many positions are convolved as one matmul over explicit patches
# (im2col). XLA's CPU convolution is pathologically slow there (ResNet-18 at 64 px spent 5 of its
# 6 s per step in layer4's 2x2 maps: 726 ms for one 3x3 conv that im2col does in 17 ms), while a
# [B*positions, k*k*C] x [k*k*C, C'] matmul is a natural shape for every backend. Larger maps keep
# XLA's convolution, which wins there.
IM2COL_MAX_POSITIONS = 49
CONV_IMPLS = ("auto", "xla", "im2col")


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def im2col_conv(x: jax.Array, kernel: jax.Array, stride: int, pad: int, dtype: Any) -> jax.Array:
    """Convolution as patches @ kernel: x [B, H, W, C], kernel [k, k, C, C'] -> [B, H', W', C']."""
    k = kernel.shape[0]
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = conv_output_size(x.shape[1], k, stride, 0)
    out_w = conv_output_size(x.shape[2], k, stride, 0)
    taps = [
        x[
            :,
            i : i + stride * (out_h - 1) + 1 : stride,
            j : j + stride * (out_w - 1) + 1 : stride,
            :,
        ]
        for i in range(k)
        for j in range(k)
    ]
    patches = jnp.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]  # [B, H', W', k*k*C]
    return dense(patches, kernel.reshape(-1, kernel.shape[-1]), dtype)


class Conv2D(nn.Module):
    """Bias-free square convolution with symmetric padding (torchvision's), kernel [k, k, C, C'].

    Same parameter name and layout as `nn.Conv`, so imported weights and checkpoints do not care
    which implementation runs; `impl` picks XLA's convolution, im2col, or by output size (auto).
    """

    features: int
    kernel_size: int
    stride: int = 1
    dtype: Any = jnp.float32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.impl not in CONV_IMPLS:
            raise ValueError(
                f"image_encoder.conv_impl must be one of {CONV_IMPLS}, got {self.impl!r}"
            )
        k, pad = self.kernel_size, self.kernel_size // 2
        kernel = self.param(
            "kernel", torchvision_conv_init, (k, k, x.shape[-1], self.features), jnp.float32
        )
        positions = conv_output_size(x.shape[1], k, self.stride, pad) * conv_output_size(
            x.shape[2], k, self.stride, pad
        )
        # A 1x1 convolution is a matmul; written as one, its weight gradient is a plain GEMM too
        # (XLA's CPU convolution took 4-8x the forward time for it, e.g. 318 ms vs 75 ms).
        use_im2col = self.impl == "im2col" or (
            self.impl == "auto" and (k == 1 or positions <= IM2COL_MAX_POSITIONS)
        )
        if use_im2col:
            return im2col_conv(x, kernel, self.stride, pad, self.dtype)
        return jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            (self.stride, self.stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            preferred_element_type=jnp.float32,
        ).astype(self.dtype)


class ResidualBlock(nn.Module):
    """torchvision BasicBlock ('basic') or Bottleneck ('bottleneck'), named as in its state_dict."""

    planes: int
    stride: int
    kind: str
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out_channels = self.planes * EXPANSION[self.kind]
        if self.kind == "basic":
            convs = [(self.planes, 3, self.stride), (self.planes, 3, 1)]
        else:
            convs = [(self.planes, 1, 1), (self.planes, 3, self.stride), (out_channels, 1, 1)]
        y = x
        for i, (features, kernel, stride) in enumerate(convs, start=1):
            y = Conv2D(features, kernel, stride, self.dtype, self.conv_impl, name=f"conv{i}")(y)
            y = BatchNorm(dtype=self.dtype, name=f"bn{i}")(y, train)
            if i < len(convs):
                y = nn.relu(y)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != out_channels:
            shortcut = Conv2D(
                out_channels, 1, self.stride, self.dtype, self.conv_impl, name="downsample_conv"
            )(x)
            shortcut = BatchNorm(dtype=self.dtype, name="downsample_bn")(shortcut, train)
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """images [B, H, W, 3] -> global-average-pooled feature [B, 8 * width * expansion]."""

    depth: str = "resnet50"
    width: int = 64
    dtype: Any = jnp.float32
    conv_impl: str = "auto"  # see Conv2D

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        if self.depth not in RESNET_LAYOUTS:
            raise ValueError(
                f"image encoder must be one of {sorted(RESNET_LAYOUTS)}, got {self.depth!r}"
            )
        kind, blocks = RESNET_LAYOUTS[self.depth]
        x = Conv2D(self.width, 7, 2, self.dtype, self.conv_impl, name="conv1")(
            images.astype(self.dtype)
        )  # [B, H/2, W/2, w]
        x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # [B, H/4, W/4, w]
        for stage, num_blocks in enumerate(blocks, start=1):
            planes = self.width * 2 ** (stage - 1)
            for block in range(num_blocks):
                stride = 2 if (stage > 1 and block == 0) else 1
                x = ResidualBlock(
                    planes, stride, kind, self.dtype, self.conv_impl, name=f"layer{stage}_{block}"
                )(x, train)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [B, 8 * width * expansion]
