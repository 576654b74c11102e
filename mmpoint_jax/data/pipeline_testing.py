"""Small record folders in the render stage's layout, for pipeline tests and benchmarks.

`write_split` writes encoded records into `<dir>/<split>-NNNNN-of-MMMMM.array_record` shards and
adds the split to `<dir>/manifest.json` (the fields the pipeline reads), so the pipeline can be
exercised without running the render stage. `smooth_views` makes images that PNG-compress like
rendered ones (random noise would not compress at all).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmpoint_jax import io_utils
from mmpoint_jax.data import records
from mmpoint_jax.data.pipeline import MANIFEST_FILE


def smooth_views(rng: np.random.Generator, num_views: int, size: int) -> np.ndarray:
    """uint8 [V, size, size, 3]: a shaded blob on a white background per view."""
    yy, xx = np.mgrid[0:size, 0:size] / size  # [S, S]
    views = np.empty((num_views, size, size, 3), np.uint8)
    for v in range(num_views):
        cy, cx, radius = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.35)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        shade = np.clip(1.0 - dist / radius, 0.0, 1.0)  # [S, S]
        colour = rng.uniform(0.3, 1.0, size=3)
        image = np.where((dist < radius)[..., None], shade[..., None] * colour * 0.8 + 0.1, 1.0)
        views[v] = np.round(image * 255).astype(np.uint8)
    return views


def synthetic_record(
    index: int,
    num_points: int,
    num_views: int,
    image_size: int,
    num_classes: int = 3,
    seed: int = 0,
) -> bytes:
    """One record with deterministic random points and smooth views; label = index % classes."""
    rng = np.random.default_rng([seed, index])
    label = index % num_classes
    return records.encode(
        object_id=f"obj{index:06d}",
        points=rng.normal(size=(num_points, 3)).astype(np.float32),
        views=smooth_views(rng, num_views, image_size)
        if num_views
        else np.zeros((0, image_size, image_size, 3), np.uint8),
        label=label,
        class_name=f"class{label}",
    )


def write_split(
    records_dir: str | os.PathLike,
    split: str,
    shard_blobs: Sequence[Sequence[bytes]],
    class_names: Sequence[str] = (),
) -> Path:
    """Writes one shard per list of encoded records and records the split in the manifest."""
    records_dir = Path(records_dir)
    manifest_path = records_dir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"splits": {}}
    entries = []
    for i, blobs in enumerate(shard_blobs):
        name = records.shard_name(split, i, len(shard_blobs))
        records.write_shard(records_dir / name, blobs)
        entries.append({"file": name, "num_records": len(blobs), "object_ids": []})
    manifest["splits"][split] = {
        "num_objects": sum(len(b) for b in shard_blobs),
        "shards": entries,
    }
    manifest["class_names"] = list(class_names)
    io_utils.atomic_write_json(manifest_path, manifest)
    return records_dir
