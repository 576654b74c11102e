"""ModelNet40 / ModelNet10 point clouds in the HDF5 releases (DATA_FORMATS.md A1).

Two layouts, both with keys `data` (M, 2048, 3) and `label` (M, 1):

* PointNet's `modelnet40_ply_hdf5_2048/`: `ply_data_{train,test}<i>.h5`, row names in
  `ply_data_<split>_<i>_id2file.json`, class names in `shape_names.txt`.
* The `modelnet{10,40}_hdf5_2048/` folders of the MM-Point notebooks (antao97's
  PointCloudDatasets): `{train,test}<i>.h5` with `{train,test}<i>_id2file.json`.

Files are read in natural order (the references glob in filesystem order, which differs
between machines), labels are squeezed to (M,) int32, and `num_points` keeps the first points
in stored order, as CrossPoint and DGCNN do; nothing is resampled or re-normalised.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mmpoint_jax.data.datasets.common import (
    DatasetFormatError,
    PointCloudSet,
    check_label_range,
    first_points,
    read_h5,
    read_lines,
    require_dir,
    sorted_glob,
)

# Label order of `shape_names.txt` (alphabetical).
MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip
# The ModelNet10 subset in alphabetical order; assumed to be the label order of the
# ModelNet10 h5 folders when they ship no `shape_names.txt` (unconfirmed).
MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
    "toilet",
)  # fmt: skip

SPLITS = ("train", "test")
NUM_STORED_POINTS = 2048


def load_modelnet40_h5(
    root: str | Path, split: str, num_points: int | None = None, with_normals: bool = False
) -> PointCloudSet:
    """ModelNet40 from `root` = the `modelnet40_ply_hdf5_2048` folder itself."""
    return load_modelnet_h5(root, split, num_points, with_normals, MODELNET40_CLASSES)


def load_modelnet10_h5(
    root: str | Path, split: str, num_points: int | None = None, with_normals: bool = False
) -> PointCloudSet:
    """ModelNet10 from `root` = the `modelnet10_hdf5_2048` folder itself."""
    return load_modelnet_h5(root, split, num_points, with_normals, MODELNET10_CLASSES)


def load_modelnet_h5(
    root: str | Path,
    split: str,
    num_points: int | None = None,
    with_normals: bool = False,
    default_class_names: tuple[str, ...] = MODELNET40_CLASSES,
) -> PointCloudSet:
    """All h5 files of `split` in `root`, concatenated in natural file order.

    Class names come from `root/shape_names.txt` when present, else `default_class_names`;
    every label must index them. `with_normals` also reads the `normal` key (absent in some
    re-packed folders: then an error).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = require_dir(Path(root), "ModelNet h5 folder")
    files = find_split_files(root, split)
    class_names = _class_names(root, default_class_names)
    shapes = {"data": (None, None, 3), "label": (None,)}
    if with_normals:
        shapes["normal"] = (None, None, 3)
    points, labels, normals, object_ids = [], [], [], []
    for path in files:
        arrays = read_h5(path, shapes)
        points.append(first_points(arrays["data"].astype(np.float32, copy=False), num_points, path))
        labels.append(check_label_range(arrays["label"], len(class_names), path, "label"))
        if with_normals:
            normals.append(
                first_points(
                    arrays["normal"].astype(np.float32, copy=False), num_points, path, "normal"
                )
            )
        object_ids.extend(_row_names(path, len(arrays["label"])))
    return PointCloudSet(
        points=np.concatenate(points),
        labels=np.concatenate(labels),
        class_names=class_names,
        source_files=tuple(str(p) for p in files),
        object_ids=tuple(object_ids),
        normals=np.concatenate(normals) if with_normals else None,
    )


def find_split_files(root: Path, split: str) -> list[Path]:
    """`ply_data_<split>*.h5` (PointNet release), else `<split>*.h5` (PointCloudDatasets)."""
    for pattern in (f"ply_data_{split}*.h5", f"{split}*.h5"):
        files = sorted_glob(root, pattern)
        if files:
            return files
    raise DatasetFormatError(
        f"{root}: no '{split}' h5 files (looked for ply_data_{split}*.h5 and {split}*.h5)"
    )


def _class_names(root: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    names_file = root / "shape_names.txt"
    return tuple(read_lines(names_file)) if names_file.exists() else default


def _row_names(h5_path: Path, num_rows: int) -> list[str]:
    """Row -> source shape from the h5's `*_id2file.json` when shipped, else `file:row`."""
    json_path = _id2file_path(h5_path)
    if json_path is None:
        return [f"{h5_path.name}:{i}" for i in range(num_rows)]
    try:
        names = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetFormatError(f"{json_path}: unreadable id2file list ({e})") from None
    if not isinstance(names, list) or len(names) != num_rows:
        count = len(names) if isinstance(names, list) else type(names).__name__
        raise DatasetFormatError(
            f"{json_path}: lists {count} names but {h5_path} holds {num_rows} rows"
        )
    return [str(n) for n in names]


def _id2file_path(h5_path: Path) -> Path | None:
    # ply_data_train0.h5 -> ply_data_train_0_id2file.json; train0.h5 -> train0_id2file.json
    stem = h5_path.stem
    match = re.fullmatch(r"(.*?)(\d+)", stem)
    candidates = [h5_path.with_name(f"{stem}_id2file.json")]
    if match:
        candidates.insert(0, h5_path.with_name(f"{match.group(1)}_{match.group(2)}_id2file.json"))
    return next((c for c in candidates if c.is_file()), None)
