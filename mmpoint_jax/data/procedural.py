"""Record folders of the procedural shapes, made once and reused: the embedded default dataset.

`ensure_records(records_dir, splits={"train": (num_per_class, seed), ...}, ...)` generates the
meshes (`synthetic.generate_dataset`, one seed per split, so the splits hold different objects of
the same categories) into `<records_dir>.meshes/` and runs the render stage into `records_dir`.
Both steps are skipped or resumed when their output is already there: the meshes by a small
stamp of the parameters that made them, the shards by the render stage's own resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmpoint_jax import io_utils, run_log

STAMP = "generated.json"


def mesh_dir_of(records_dir: str | os.PathLike) -> Path:
    records_dir = Path(records_dir)
    return records_dir.with_name(records_dir.name + ".meshes")


def _generate_meshes(mesh_dir: Path, splits: Mapping[str, tuple[int, int]]) -> bool:
    """Writes the meshes unless a stamp says these exact splits are there; True when written."""
    from mmpoint_jax.data import synthetic

    wanted = {split: list(spec) for split, spec in sorted(splits.items())}
    stamp = mesh_dir / STAMP
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return False
    if mesh_dir.exists() and any(mesh_dir.iterdir()):
        raise FileExistsError(
            f"{mesh_dir} holds meshes made with other parameters than {wanted}; remove it or "
            "choose another records folder"
        )
    for split, (num_per_class, seed) in wanted.items():
        synthetic.generate_dataset(mesh_dir, num_per_class, seed, split=split)
    io_utils.atomic_write_json(stamp, wanted)
    return True


def ensure_records(
    records_dir: str | os.PathLike,
    *,
    splits: Mapping[str, tuple[int, int]],
    views: int,
    image_size: int,
    points: int,
    workers: int = 1,
    seed: int = 0,
    preview: int = 0,
) -> dict[str, Any]:
    """Procedural shapes rendered into `records_dir`; returns the render stage's summary.

    `splits` maps a split name to (objects per category, generator seed). `seed` seeds the
    render stage's sampling and cameras.
    """
    from mmpoint_jax.data import render_stage

    mesh_dir = mesh_dir_of(records_dir)
    if _generate_meshes(mesh_dir, splits):
        run_log.log(f"procedural shapes: generated {dict(splits)} into {mesh_dir}")
    else:
        run_log.log(f"procedural shapes: reusing the meshes in {mesh_dir}")
    config = render_stage.default_config(views=views)
    config.update(
        input=str(mesh_dir),
        output=str(records_dir),
        input_format="shapenet",
        workers=workers,
        seed=seed,
        points=points,
        image_size=image_size,
        objects_per_shard=64,
        preview=preview,
    )
    summary = render_stage.run(config)
    if summary.get("shards_reused") and not summary.get("shards_written"):
        run_log.log(
            f"procedural records: reused all {summary['shards_reused']} shards in {records_dir}"
        )
    return summary
