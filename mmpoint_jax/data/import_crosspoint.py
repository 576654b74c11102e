"""Import of CrossPoint's already-rendered ShapeNet layout into records, without re-rendering.

The layout (DATA_FORMATS.md section A4), under a `data/` folder:

    ShapeNet/<synset>/<model_id>.ply                         points (x, y, z; normals if present)
    ShapeNetRendering/<synset>/<model_id>/rendering/NN.png   the 24 R2N2 views, 137x137 RGBA
    ShapeNetRendering/<synset>/<model_id>/rendering/renderings.txt, rendering_metadata.txt

Per object: points are centred and scaled into the unit sphere and resampled to N (kept as
stored when the count matches; otherwise a subset, or repeats, drawn from the object's seed);
the first V views (in `renderings.txt` order) are turned into RGB by compositing the alpha channel
onto white (`alpha="composite"`, the default) or by dropping it as CrossPoint's loader does
(`alpha="drop"`), and resized to the import size (137, R2N2's own, keeps them unresampled).
R2N2's cameras cannot be tied to the points' frame from the public files, so `intrinsics` and
`extrinsics` are zero and `meta["cameras"]` says "unknown"; the raw `rendering_metadata.txt`
lines of the kept views travel in `meta["r2n2_metadata"]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mmpoint_jax.data import meshes, records

POINTS_DIR = "ShapeNet"
RENDERS_DIR = "ShapeNetRendering"
R2N2_IMAGE_SIZE = 137
ALPHA_MODES = ("composite", "drop")
# The 13 ShapeNetCore v1 synsets of the R2N2 renders (DATA_FORMATS.md A4).
R2N2_SYNSET_NAMES = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "loudspeaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "telephone",
    "04530566": "watercraft",
}


class CrossPointError(meshes.MeshError):
    """An object of the layout that cannot be imported (`kind: detail` is the skip reason)."""


class CrossPointObject(NamedTuple):
    object_id: str  # "<synset>/<model_id>"
    points_file: str  # relative to the root
    synset: str


def is_layout(root: str | os.PathLike) -> bool:
    root = Path(root)
    return (root / POINTS_DIR).is_dir() and (root / RENDERS_DIR).is_dir()


def discover(root: str | os.PathLike) -> list[CrossPointObject]:
    """Every `ShapeNet/<synset>/<model_id>.ply` under `root`, sorted by object id."""
    root = Path(root)
    found = []
    for path in sorted((root / POINTS_DIR).glob("*/*.ply")):
        synset, model_id = path.parent.name, path.stem
        found.append(
            CrossPointObject(f"{synset}/{model_id}", path.relative_to(root).as_posix(), synset)
        )
    return found


def synset_name(synset: str) -> str:
    return R2N2_SYNSET_NAMES.get(synset, synset)


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points [N, 3] (and normals [N, 3] when the file has them) of a PLY point cloud."""
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    cloud = o3d.io.read_point_cloud(str(path))
    points = np.asarray(cloud.points, np.float64)
    normals = np.asarray(cloud.normals, np.float64) if cloud.has_normals() else None
    if len(points) == 0:
        raise CrossPointError("empty", f"{path} holds no points (or is not a readable PLY)")
    if not np.all(np.isfinite(points)):
        raise CrossPointError("non-finite", f"{path} has NaN or Inf coordinates")
    return points, normals


def resample_indices(count: int, target: int, rng: np.random.Generator) -> np.ndarray:
    """Indices giving `target` points from `count`: all when equal, a sorted subset when more,
    all plus random repeats when fewer."""
    if count == target:
        return np.arange(count)
    if count > target:
        return np.sort(rng.choice(count, target, replace=False))
    return np.concatenate([np.arange(count), rng.choice(count, target - count, replace=True)])


def view_files(render_dir: Path) -> list[Path]:
    """The views in R2N2 order: `renderings.txt` when present, else the sorted PNG names."""
    listing = render_dir / "renderings.txt"
    if listing.exists():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        return [render_dir / name for name in names]
    return sorted(render_dir.glob("*.png"))


def load_view(path: Path, size: int, alpha: str) -> np.ndarray:
    """One R2N2 PNG as uint8 RGB [size, size, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"), np.float32)
    except Exception as e:  # noqa: BLE001 - PIL raises many types on corrupt files
        raise CrossPointError("unreadable", f"{path}: {type(e).__name__}: {e}") from None
    if alpha == "composite":
        opacity = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * opacity + 255.0 * (1.0 - opacity)
    else:
        rgb = rgba[..., :3]
    image = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def build_record(
    root: str | os.PathLike,
    item: CrossPointObject,
    *,
    label: int,
    class_name: str,
    num_points: int,
    num_views: int,
    image_size: int,
    alpha: str,
    rng: np.random.Generator,
    png_compress_level: int = 3,
) -> bytes:
    """The record of one object; raises CrossPointError (the skip reason) on a bad object."""
    root = Path(root)
    points, normals = read_points(root / item.points_file)
    keep = resample_indices(len(points), num_points, rng)
    points = meshes.normalise_points(points)[keep]
    normals = None if normals is None else normals[keep]
    meta = {"source": item.points_file, "format": "crosspoint", "cameras": "unknown"}
    views = np.zeros((0, image_size, image_size, 3), np.uint8)
    if num_views > 0:
        render_dir = (
            root / RENDERS_DIR / item.synset / item.object_id.split("/", 1)[1] / "rendering"
        )
        files = view_files(render_dir) if render_dir.is_dir() else []
        if len(files) < num_views:
            raise CrossPointError(
                "missing-views", f"{render_dir} has {len(files)} views, {num_views} asked for"
            )
        views = np.stack([load_view(f, image_size, alpha) for f in files[:num_views]])
        metadata = render_dir / "rendering_metadata.txt"
        if metadata.exists():
            lines = [line.strip() for line in metadata.read_text().splitlines() if line.strip()]
            meta["r2n2_metadata"] = ";".join(lines[:num_views])
    return records.encode(
        object_id=item.object_id,
        points=points,
        normals=normals,
        views=views if num_views > 0 else (),
        label=label,
        class_name=class_name,
        meta=meta,
        png_compress_level=png_compress_level,
    )
