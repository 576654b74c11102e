"""ScanObjectNN h5 files (DATA_FORMATS.md A3): every variant by name, with or without
background, and CrossPoint's renamed `main_split/{train,test}.h5`.

Keys: `data` (M, 2048, 3) raw coordinates (not normalised: the papers in this family feed them
as stored), `label` (M,) in 0..14, and `mask` (M, 2048) with the object instance id per point
and -1 for background (absent in some re-packed files; then `mask` is None).

`root` is the folder that holds the split folders (`h5_files/` of the release, or CrossPoint's
`data/ScanObjectNN/`); pointing it at a split folder itself also works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmpoint_jax.data.datasets.common import (
    DatasetFormatError,
    PointCloudSet,
    check_label_range,
    first_points,
    read_h5,
    require_dir,
)

CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

# Variant -> file-name suffix after `training_` / `test_`.
VARIANT_SUFFIXES = {
    "OBJ_BG": "objectdataset.h5",
    "OBJ_ONLY": "objectdataset.h5",  # same files, in the `_nobg` folder
    "PB_T25": "objectdataset_augmented25_norot.h5",
    "PB_T25_R": "objectdataset_augmented25rot.h5",
    "PB_T50_R": "objectdataset_augmentedrot.h5",
    "PB_T50_RS": "objectdataset_augmentedrot_scale75.h5",
}
# CrossPoint's `main_split/{train,test}.h5`: OBJ_BG renamed (per a user report and the folder).
CROSSPOINT = "crosspoint"
VARIANTS = (*VARIANT_SUFFIXES, CROSSPOINT)
SPLIT_FOLDERS = ("main_split", "split1", "split2", "split3", "split4")
SPLITS = ("train", "test")


def scanobjectnn_file(
    root: str | Path,
    variant: str = "OBJ_BG",
    split: str = "train",
    background: bool | None = None,
    split_folder: str = "main_split",
) -> Path:
    """The h5 path of one variant and split; errors list every place looked at.

    `background=None` takes the variant's own (OBJ_ONLY: without, every other: with);
    `background=False` picks the `<split_folder>_nobg` folder for any variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ScanObjectNN variant {variant!r}; known: {list(VARIANTS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split_folder not in SPLIT_FOLDERS:
        raise ValueError(f"split_folder must be one of {SPLIT_FOLDERS}, got {split_folder!r}")
    if background is None:
        background = variant != "OBJ_ONLY"
    if variant == "OBJ_ONLY" and background:
        raise ValueError("OBJ_ONLY is the variant without background; use OBJ_BG for background")
    root = require_dir(Path(root), "ScanObjectNN folder")
    folder = split_folder if background else f"{split_folder}_nobg"
    if variant == CROSSPOINT:
        name = f"{split}.h5"
    else:
        name = f"{'training' if split == 'train' else 'test'}_{VARIANT_SUFFIXES[variant]}"
    candidates = [root / folder / name, root / name]
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetFormatError(
        f"ScanObjectNN {variant} {split}: file not found; looked for "
        + " and ".join(str(c) for c in candidates)
    )


def load_scanobjectnn_h5(
    root: str | Path,
    split: str,
    variant: str = "OBJ_BG",
    num_points: int | None = None,
    background: bool | None = None,
    split_folder: str = "main_split",
) -> PointCloudSet:
    """One split of one variant (see `scanobjectnn_file` for how the file is found)."""
    path = scanobjectnn_file(root, variant, split, background, split_folder)
    arrays = read_h5(
        path, {"data": (None, None, 3), "label": (None,), "mask": (None, None)}, optional=("mask",)
    )
    points = arrays["data"]
    mask = arrays.get("mask")
    if mask is not None and mask.shape[1] != points.shape[1]:
        raise DatasetFormatError(
            f"{path}: key 'mask' has {mask.shape[1]} points per cloud, 'data' {points.shape[1]}"
        )
    return PointCloudSet(
        points=first_points(points.astype(np.float32, copy=False), num_points, path),
        labels=check_label_range(arrays["label"], len(CLASSES), path, "label"),
        class_names=CLASSES,
        source_files=(str(path),),
        object_ids=tuple(f"{path.name}:{i}" for i in range(points.shape[0])),
        mask=None
        if mask is None
        else first_points(mask.astype(np.int32, copy=False), num_points, path, "mask"),
    )
