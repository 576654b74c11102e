"""Building blocks with PyTorch's semantics, so imported `.pth` weights mean the same thing here.

* `BatchNorm`: momentum 0.1 in PyTorch's convention (0.9 in Flax's), eps 1e-5, and the running
  variance stored **unbiased** (n / (n - 1) times the batch variance), exactly as
  `torch.nn.BatchNorm*` updates it. Flax's own `nn.BatchNorm` keeps the biased one, which makes a
  checkpoint trained here and one imported from PyTorch disagree in eval mode. Statistics are
  computed in float32 whatever the compute dtype. Under `jax.jit` over a mesh the batch axis is
  global, so the statistics span the global batch with no extra code.
* `Linear`: a dense layer initialised like `torch.nn.Linear` / a 1x1 `Conv` (uniform
  +-1/sqrt(fan_in) for kernel and bias), so training from scratch starts where PyTorch starts.
* `leaky_relu` with DGCNN's slope 0.2, and the dtype helper every model uses.

Parameter names follow Flax (`kernel` [in, out], `bias`, `scale`, `mean`, `var`);
`mmpoint_jax.convert` maps PyTorch names onto them.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2
# PyTorch's default Linear/Conv init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str | Any) -> Any:
    """'float32' | 'bfloat16' (config strings) -> jnp dtype; dtypes pass through."""
    if isinstance(name, str):
        if name not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
        return DTYPES[name]
    return name


def dense(x: jax.Array, kernel: jax.Array, dtype: Any) -> jax.Array:
    """x @ kernel in `dtype` with float32 accumulation, result in `dtype`.

    Accumulating bf16 products in float32 is what TPUs and GPUs do anyway, and on CPUs with
    AMX/AVX512-BF16 it is also the fast path (about 2x float32, while bf16 out is not faster).
    """
    y = jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)
    return y.astype(dtype)


def leaky_relu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, LEAKY_SLOPE * x)


def _torch_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(nn.Module):
    """y = x @ kernel (+ bias) on the last axis; PyTorch's default initialisation."""

    features: int
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param(
            "kernel", torch_default_kernel_init, (fan_in, self.features), jnp.float32
        )
        y = dense(x, kernel, self.dtype)
        if self.use_bias:
            bias = self.param("bias", _torch_bias_init(fan_in), (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the last, with PyTorch's running statistics.

    `momentum` is in Flax's convention: running = momentum * running + (1 - momentum) * batch
    (PyTorch's default momentum 0.1 is 0.9 here). `var` holds the unbiased running variance.
    Train mode normalises with the batch's biased variance, as PyTorch does.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def affine_from_stats(
        self,
        num_features: int,
        batch_mean: jax.Array | None,
        batch_var: jax.Array | None,
        count: int,
        train: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """Per-channel (scale, shift) with BN(x) = x * scale + shift, float32 [C] each.

        Train mode: `batch_mean` / `batch_var` (biased) over `count` values per channel normalise
        the batch and update the running statistics. Eval mode ignores them and uses the running
        ones. Layers that can reduce before normalising (factorised EdgeConv) call this directly.
        """
        gamma = self.param("scale", nn.initializers.ones, (num_features,), jnp.float32)
        beta = self.param("bias", nn.initializers.zeros, (num_features,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (num_features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (num_features,), jnp.float32)
        if train:
            mean, var = batch_mean, batch_var
            if not self.is_initializing():
                unbiased = var * (count / max(count - 1, 1))
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = (
                    self.momentum * running_var.value + (1 - self.momentum) * unbiased
                )
        else:
            mean, var = running_mean.value, running_var.value
        scale = gamma * jax.lax.rsqrt(var + self.epsilon)
        return scale, beta - mean * scale

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        axes = tuple(range(x.ndim - 1))
        x32 = x.astype(jnp.float32)
        if train:
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)  # two-pass: no cancellation
            count = math.prod(x.shape[:-1])
        else:
            mean = var = None
            count = 0
        scale, shift = self.affine_from_stats(x.shape[-1], mean, var, count, train)
        return (x32 * scale + shift).astype(self.dtype)
