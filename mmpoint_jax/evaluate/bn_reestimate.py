"""The random-init baseline: a freshly initialised point encoder whose BatchNorm running
statistics are re-estimated on the evaluation's train split, by forward passes only.

A new encoder has running mean 0 and variance 1 in every BatchNorm, which in eval mode leaves
every layer's activations at an arbitrary scale (a new DGCNN's first EdgeConv outputs on
unit-sphere clouds have variance about 0.02, so they come out about 7 times too small), so its
features are artificially bad: a straw-man baseline. Re-estimation sets
every layer's running statistics to the **population** moments of that layer's inputs over
the whole split, leaving every weight as initialised.

How the population moments are obtained (exact, not a moving average):

* Layers are estimated one at a time, in the order the forward pass reaches them. While layer
  l is estimated, layers 1..l-1 normalise with their freshly estimated running statistics (eval
  mode), so the moments of layer l are those of the inputs it will see when features are
  extracted. (PyTorch's `momentum=None` cumulative averaging in train mode instead normalises
  earlier layers with each batch's own statistics, and averages per-batch variances, which
  leaves out the spread of the batch means; both differ slightly from the population values.)
* Each pass records, per cloud, the mean and biased variance that the layer's own train-mode
  code computes (BatchNorm, or factorised EdgeConv's moments of the edge outputs without the
  [B, N, k, F] tensor), by intercepting `BatchNorm.affine_from_stats` (flax
  `nn.intercept_methods`); no model code changes. The pass returns only layer l's moments, so
  XLA drops the layers after it: DGCNN's five layers cost about 3.7 eval forward passes
  (bench/evaluate.py: 5.4 vs 19.9 clouds/s on 2 CPU cores).
* The per-cloud moments are pooled on the host in float64 (Chan et al.'s parallel formula):
  running mean = population mean, running var = population variance times n / (n - 1), n the
  number of values per channel over the split, matching the unbiased running variance that
  `layers.BatchNorm` keeps. Padded rows of the last batch are left out, so every cloud counts
  exactly once whatever the batch size.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

import numpy as np

_AFFINE_METHOD = "affine_from_stats"


def _affine_signature() -> inspect.Signature:
    from mmpoint_jax.models.layers import BatchNorm

    return inspect.signature(getattr(BatchNorm, _AFFINE_METHOD))


def _is_batchnorm_stats_call(context) -> bool:
    from mmpoint_jax.models.layers import BatchNorm

    return context.method_name == _AFFINE_METHOD and isinstance(context.module, BatchNorm)


def batchnorm_paths(model, variables: dict[str, Any], sample: np.ndarray) -> list[tuple[str, ...]]:
    """Module paths of the BatchNorm layers in the order the forward pass reaches them."""
    import flax.linen as nn
    import jax

    paths: list[tuple[str, ...]] = []

    def record(next_fun, args, kwargs, context):
        if _is_batchnorm_stats_call(context) and context.module.path not in paths:
            paths.append(tuple(context.module.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, p: model.apply(v, p, train=False), variables, sample)
    return paths


@functools.lru_cache(maxsize=32)
def make_moments_fn(model_json: str, target: tuple[str, ...]) -> tuple[Callable, dict[str, int]]:
    """jit (variables, points [B, N, C]) -> (mean [B, F], biased var [B, F]) of layer `target`.

    `model_json` is the encoder config as JSON (hashable: compiled functions are reused by
    later calls with the same encoder). Moments are per cloud (vmap over single-cloud batches),
    every BatchNorm normalises with its running statistics. The returned dict receives `count`
    (values per channel per cloud) when the function is first traced.
    """
    import flax.linen as nn
    import jax

    from mmpoint_jax.models import build_point_encoder

    model = build_point_encoder(json.loads(model_json))
    signature = _affine_signature()
    traced: dict[str, int] = {}

    def one_cloud(variables, cloud):  # cloud [N, C]
        found = {}

        def intercept(next_fun, args, kwargs, context):
            if not _is_batchnorm_stats_call(context):
                return next_fun(*args, **kwargs)
            bound = signature.bind(context.module, *args, **kwargs)
            if tuple(context.module.path) == target:
                found["moments"] = (bound.arguments["batch_mean"], bound.arguments["batch_var"])
                traced["count"] = int(bound.arguments["count"])
            bound.arguments["train"] = False  # normalise with running stats; update nothing
            return next_fun(*bound.args[1:], **bound.kwargs)

        # train=True makes the layers compute their batch moments; the interceptor then turns
        # every normalisation into eval mode.
        with nn.intercept_methods(intercept):
            model.apply(variables, cloud[None], train=True)
        if "moments" not in found:
            raise ValueError(f"no BatchNorm at {'/'.join(target)} ran in the forward pass")
        return found["moments"]

    return jax.jit(jax.vmap(one_cloud, in_axes=(None, 0))), traced


class PooledMoments:
    """Population mean and variance per channel from per-cloud moments (float64, Chan et al.)."""

    def __init__(self):
        self.count = 0  # values per channel so far
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of squared deviations from `mean`

    def add(self, means: np.ndarray, variances: np.ndarray, count_per_cloud: int) -> None:
        """means, variances [B, F] (biased, per cloud), each over `count_per_cloud` values."""
        means = np.asarray(means, np.float64)
        variances = np.asarray(variances, np.float64)
        if means.shape[0] == 0:
            return
        batch_count = count_per_cloud * means.shape[0]
        batch_mean = means.mean(axis=0)  # [F]: equal counts per cloud
        batch_m2 = count_per_cloud * (
            variances.sum(axis=0) + np.square(means - batch_mean).sum(axis=0)
        )
        if self.mean is None:
            self.count, self.mean, self.m2 = batch_count, batch_mean, batch_m2
            return
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        self.m2 = self.m2 + batch_m2 + np.square(delta) * (self.count * batch_count / total)
        self.count = total

    def population_variance(self) -> np.ndarray:
        return self.m2 / self.count

    def unbiased_variance(self) -> np.ndarray:
        return self.m2 / max(self.count - 1, 1)


def _set_stats(batch_stats: dict, path: tuple[str, ...], mean: np.ndarray, var: np.ndarray):
    node = batch_stats
    for name in path:
        node = node[name]
    node["mean"] = np.asarray(mean, np.float32)
    node["var"] = np.asarray(var, np.float32)


def reestimate_batch_stats(
    model_cfg: Any,
    variables: dict[str, Any],
    points: np.ndarray,
    batch_size: int = 64,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables with every running mean/var set to population moments, report); see module doc.

    points [M, N, C] is the split to estimate on (the evaluation's train split). Params are
    returned unchanged. The report lists each layer's path, channel count and value count.
    """
    import jax

    from mmpoint_jax import run_log
    from mmpoint_jax.features import batch_layout
    from mmpoint_jax.models import build_point_encoder

    points = np.asarray(points)
    if points.ndim != 3 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty [M, N, C] array, got shape {points.shape}")
    model_json = json.dumps(run_log.config_to_dict(model_cfg), sort_keys=True)
    model = build_point_encoder(model_cfg)
    params = jax.tree.map(np.asarray, variables["params"])
    batch_stats = jax.tree.map(lambda x: np.array(x, np.float32), variables.get("batch_stats", {}))
    paths = batchnorm_paths(model, {"params": params, "batch_stats": batch_stats}, points[:1])
    batch_size, batch_sharding, replicated = batch_layout(max(1, min(batch_size, len(points))))
    total = len(points)
    report = []
    bar = run_log.progress(total=total * len(paths), desc="BN re-estimate", unit="cloud")
    try:
        for path in paths:
            moments_fn, traced = make_moments_fn(model_json, path)
            current = jax.device_put({"params": params, "batch_stats": batch_stats}, replicated)
            pooled = PooledMoments()
            for start in range(0, total, batch_size):
                chunk = points[start : start + batch_size].astype(np.float32)
                valid = len(chunk)
                if valid < batch_size:  # same shape every batch: one compilation per layer
                    pad = np.repeat(chunk[-1:], batch_size - valid, axis=0)
                    chunk = np.concatenate([chunk, pad])
                means, variances = moments_fn(current, jax.device_put(chunk, batch_sharding))
                pooled.add(
                    np.asarray(means)[:valid], np.asarray(variances)[:valid], traced["count"]
                )
                bar.update(valid)
            _set_stats(batch_stats, path, pooled.mean, pooled.unbiased_variance())
            report.append(
                {"layer": "/".join(path), "channels": int(pooled.mean.size), "values": pooled.count}
            )
    finally:
        bar.close()
    return {"params": params, "batch_stats": batch_stats}, {"layers": report, "num_clouds": total}


def init_encoder_variables(model_cfg: Any, num_points: int, seed: int) -> dict[str, Any]:
    """Freshly initialised {"params", "batch_stats"} (numpy) of the point encoder, from `seed`."""
    import jax
    import jax.numpy as jnp

    from mmpoint_jax.models import build_point_encoder

    model = build_point_encoder(model_cfg)
    sample = jnp.zeros((2, num_points, 3), jnp.float32)
    init = jax.jit(lambda key: model.init(key, sample, train=False))
    return jax.tree.map(np.asarray, init(jax.random.key(seed)))


def random_init_encoder(
    model_cfg: Any, train_points: np.ndarray, seed: int = 0, batch_size: int = 64
) -> dict[str, Any]:
    """The random-init baseline's variables: initialised from `seed`, BatchNorm re-estimated on
    `train_points` [M, N, 3] (see the module doc)."""
    train_points = np.asarray(train_points)
    variables = init_encoder_variables(model_cfg, train_points.shape[1], seed)
    variables, _ = reestimate_batch_stats(model_cfg, variables, train_points, batch_size)
    return variables
