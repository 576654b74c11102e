"""The labelled point clouds an evaluation reads, by `data.format`: real h5 releases or
render-stage records, all returned as `datasets.PointCloudSet`.

  modelnet40_h5   `root` = the `modelnet40_ply_hdf5_2048` folder itself (splits train / test)
  modelnet10_h5   `root` = the `modelnet10_hdf5_2048` folder
  scanobjectnn_h5 `root` = the folder holding `main_split/` (the release's `h5_files/`, or
                  CrossPoint's `data/ScanObjectNN/`); `variant` 'auto' reads CrossPoint's
                  `main_split/{train,test}.h5` when present, else the release's OBJ_BG files
                  (the same objects, DATA_FORMATS.md A3)
  records         `root` = a render-stage output folder (any split names its manifest lists)

Every format keeps the first `num_points` points of each cloud in stored order (records with
fewer points repeat them cyclically, as the pretraining pipeline does); nothing is normalised,
as in the papers' evaluation code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from mmpoint_jax.config_lib import ConfigError
from mmpoint_jax.data.datasets import (
    DatasetFormatError,
    PointCloudSet,
    load_modelnet10_h5,
    load_modelnet40_h5,
    load_scanobjectnn_h5,
)
from mmpoint_jax.data.datasets import scanobjectnn as scanobjectnn_lib

FORMATS = ("modelnet40_h5", "modelnet10_h5", "scanobjectnn_h5", "records")
AUTO_VARIANT = "auto"


def default_data_config() -> ml_collections.ConfigDict:
    """The `data` section of every evaluation config (see the module doc for the fields)."""
    return ml_collections.ConfigDict(
        dict(
            format="modelnet40_h5",
            root="",
            num_points=1024,  # the papers' protocol: the first 1024 stored points
            train_split="train",
            test_split="test",
            variant=AUTO_VARIANT,  # ScanObjectNN only: auto | OBJ_BG | OBJ_ONLY | PB_T50_RS | ...
            background=True,  # ScanObjectNN only: False reads the `_nobg` folders
            skip_bad_records=False,  # records only: leave out unreadable records (and say so)
        )
    )


def _field(data_cfg: Any, name: str) -> Any:
    if name in data_cfg:
        return data_cfg[name]
    return default_data_config()[name]


def check_data_config(data_cfg: Any) -> None:
    """ConfigError naming the field, or DatasetFormatError for a missing folder, before any work."""
    fmt = _field(data_cfg, "format")
    if fmt not in FORMATS:
        raise ConfigError(f"config field 'data.format' = {fmt!r}; expected one of {list(FORMATS)}")
    root = _field(data_cfg, "root")
    if not root:
        raise ConfigError(
            "config field 'data.root' is empty: set --config.data.root=DIR (the dataset's folder)"
        )
    if not Path(root).is_dir():
        raise DatasetFormatError(f"data.root: folder not found: {root}")
    if int(_field(data_cfg, "num_points")) <= 0:
        raise ConfigError(
            f"config field 'data.num_points' must be > 0, got {_field(data_cfg, 'num_points')}"
        )


def _scanobjectnn_variant(root: str, variant: str, background: bool) -> str:
    if variant != AUTO_VARIANT:
        return variant
    try:
        scanobjectnn_lib.scanobjectnn_file(
            root, scanobjectnn_lib.CROSSPOINT, "train", None if background else False
        )
        return scanobjectnn_lib.CROSSPOINT
    except DatasetFormatError:
        return "OBJ_BG" if background else "OBJ_ONLY"


def load_split(data_cfg: Any, split: str) -> PointCloudSet:
    """One split of the dataset `data_cfg` describes (a ConfigDict or dict; see the module doc)."""
    check_data_config(data_cfg)
    fmt = _field(data_cfg, "format")
    root = str(_field(data_cfg, "root"))
    num_points = int(_field(data_cfg, "num_points"))
    if fmt == "modelnet40_h5":
        return load_modelnet40_h5(root, split, num_points)
    if fmt == "modelnet10_h5":
        return load_modelnet10_h5(root, split, num_points)
    if fmt == "scanobjectnn_h5":
        background = bool(_field(data_cfg, "background"))
        variant = _scanobjectnn_variant(root, _field(data_cfg, "variant"), background)
        return load_scanobjectnn_h5(
            root, split, variant, num_points, background=None if background else False
        )
    return _load_records(root, split, num_points, bool(_field(data_cfg, "skip_bad_records")))


def _load_records(root: str, split: str, num_points: int, skip_bad: bool) -> PointCloudSet:
    from mmpoint_jax.data import pipeline

    listed = sorted(pipeline.read_manifest(root).get("splits") or {})
    if split not in listed:
        raise DatasetFormatError(
            f"{Path(root) / pipeline.MANIFEST_FILE} lists no split '{split}' (it has {listed}); "
            "set --config.data.train_split / test_split"
        )
    points, labels, class_names = pipeline.load_labelled_points(
        root, split, num_points, skip_bad_records=skip_bad
    )
    if labels.min() < 0:
        raise DatasetFormatError(
            f"{root} split '{split}' has unlabelled records (label {labels.min()}): an "
            "evaluation needs class labels (render with class folders)"
        )
    num_classes = int(labels.max()) + 1
    if len(class_names) < num_classes:  # a manifest without names: call the classes by number
        class_names = [*class_names, *(str(i) for i in range(len(class_names), num_classes))]
    return PointCloudSet(
        points=points,
        labels=labels,
        class_names=tuple(class_names),
        source_files=(str(Path(root) / "manifest.json"),),
        object_ids=tuple(f"{split}:{i}" for i in range(len(labels))),
    )


def describe(dataset: PointCloudSet) -> dict[str, Any]:
    """What eval.json records about a split: size, classes and the files read."""
    return {
        "num_objects": len(dataset),
        "num_points": int(dataset.points.shape[1]),
        "num_classes": dataset.num_classes,
        "source_files": list(dataset.source_files),
    }
