"""Eval-mode global features of point clouds with any 3D-encoder checkpoint (linear SVM, few-shot).

`extract_features(model_cfg, variables, points [M, N, 3]) -> [M, F]` runs the point encoder in eval
mode (BatchNorm running statistics) over fixed-size batches: one compilation, the last batch
padded (and its padding dropped), batches laid out over all local devices, the next batch
dispatched while the previous one is copied back, and a progress bar.

`python -m mmpoint_jax.features CKPT IN.npy OUT.npy [--batch_size 64]`: CKPT is anything
`checkpointing.restore_encoder` reads (a converted PyTorch export, an export after pretraining,
a pretraining step folder, or a workdir); IN.npy a float array [M, N, 3]; OUT.npy gets float32
[M, F] (F = 2 * emb_dims for DGCNN), written atomically.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
from typing import Any

import numpy as np

DEFAULT_BATCH_SIZE = 64


def batch_layout(batch_size: int):
    """Sharding that splits a batch over the local devices (batch_size rounded up to fit)."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.local_devices()
    batch_size = -(-batch_size // len(devices)) * len(devices)
    mesh = Mesh(np.array(devices), ("data",))
    return (
        batch_size,
        NamedSharding(mesh, PartitionSpec("data")),
        NamedSharding(mesh, PartitionSpec()),
    )


def make_encode_fn(model_cfg: Any):
    """jit-compiled (variables, points [b, N, C]) -> global features [b, F], eval mode.

    One function per encoder config, kept for the process: periodic evaluations during training
    call `extract_features` again and again and must not recompile each time.
    """
    as_dict = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
    return _encode_fn_for(json.dumps(as_dict, sort_keys=True, default=list))


@functools.lru_cache(maxsize=16)
def _encode_fn_for(model_cfg_json: str):
    import jax

    from mmpoint_jax.models import build_point_encoder

    model = build_point_encoder(json.loads(model_cfg_json))
    return jax.jit(lambda variables, points: model.apply(variables, points, train=False)[0])


def extract_features(
    model_cfg: Any,
    variables: dict[str, Any],
    points: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    desc: str = "features",
) -> np.ndarray:
    """points [M, N, C] -> float32 features [M, F] in eval mode; see the module docstring."""
    import jax

    from mmpoint_jax import run_log

    points = np.asarray(points)
    if points.ndim != 3 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty [M, N, C] array, got shape {points.shape}")
    batch_size, batch_sharding, replicated = batch_layout(max(1, min(batch_size, len(points))))
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    variables = jax.device_put(variables, replicated)
    encode = make_encode_fn(model_cfg)
    total = len(points)
    outputs, pending = [], None
    bar = run_log.progress(total=total, desc=desc, unit="cloud")
    try:
        for start in range(0, total, batch_size):
            chunk = points[start : start + batch_size].astype(np.float32)
            valid = len(chunk)
            if valid < batch_size:  # pad by repeating the last cloud: same shape, no recompile
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - valid, axis=0)])
            result = encode(variables, jax.device_put(chunk, batch_sharding))  # async dispatch
            if pending is not None:
                outputs.append(_fetch(pending, bar))
            pending = (result, valid)
        outputs.append(_fetch(pending, bar))
    finally:
        bar.close()
    return np.concatenate(outputs).astype(np.float32)


def _fetch(pending, bar) -> np.ndarray:
    result, valid = pending
    out = np.asarray(result)[:valid]
    bar.update(valid)
    return out


def _load_points(path: str) -> np.ndarray:
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as a .npy array: {e}") from None
    if points.ndim != 3 or points.shape[-1] < 3 or not np.issubdtype(points.dtype, np.floating):
        raise ValueError(
            f"{path}: expected float point clouds [M, N, 3], got {points.dtype} {points.shape}"
        )
    if not np.all(np.isfinite(points)):
        bad = np.unique(np.nonzero(~np.isfinite(points))[0])
        raise ValueError(f"{path}: clouds {bad[:10].tolist()} contain NaN or Inf")
    return points


def save_npy_atomic(path: str, array: np.ndarray) -> None:
    from mmpoint_jax import io_utils

    buffer = io.BytesIO()
    np.save(buffer, array)
    io_utils.atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmpoint_jax.features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="encoder export, pretraining step folder or workdir")
    parser.add_argument("points", help="input .npy, float [M, N, 3]")
    parser.add_argument("out", help="output .npy, float32 [M, F]")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args(argv)

    from mmpoint_jax.train.checkpointing import CheckpointError, restore_encoder

    try:
        points = _load_points(args.points)
        encoder = restore_encoder(args.checkpoint, tower="point")
        features = extract_features(encoder.model, encoder.variables, points, args.batch_size)
        save_npy_atomic(args.out, features)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.abspath(args.out)}: features {features.shape} from {encoder.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
