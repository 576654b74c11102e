"""ShapeNetPart (DATA_FORMATS.md A5): the category -> global part id table, and loaders for
the hdf5 release and the txt release with its json split lists.

* hdf5 (`shapenet_part_seg_hdf5_data/` or `hdf5_data/`): `ply_data_{train,val,test}<i>.h5`
  with `data` (M, 2048, 3), `label` (M, 1) category, `pid` (M, 2048) global part id. Split
  `trainval` = the train files then the val files, as CrossPoint and DGCNN train on.
* txt (`shapenetcore_partanno_segmentation_benchmark_v0_normal/`): `<synset>/<id>.txt` rows
  `x y z nx ny nz part`, a varying number of points per shape, split lists in
  `train_test_split/shuffled_<split>_file_list.json`. Shapes are resampled to a fixed count
  with replacement (seeded per shape) after centring + scaling all of the shape's points into
  the unit sphere, as the PointNet++-style loaders do.

Every part id is checked to belong to its shape's category: a wrong id would silently
corrupt the IoU (it would count against a part the category does not have).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmpoint_jax import run_log
from mmpoint_jax.data.datasets.common import (
    DatasetFormatError,
    PartSegSet,
    check_label_range,
    first_points,
    read_h5,
    read_lines,
    require_dir,
    require_file,
    sorted_glob,
)

# (name, synset, number of parts); label = position, global part ids are consecutive.
CATEGORY_TABLE = (
    ("airplane", "02691156", 4), ("bag", "02773838", 2), ("cap", "02954340", 2),
    ("car", "02958343", 4), ("chair", "03001627", 4), ("earphone", "03261776", 3),
    ("guitar", "03467517", 3), ("knife", "03624134", 2), ("lamp", "03636649", 4),
    ("laptop", "03642806", 2), ("motorbike", "03790512", 6), ("mug", "03797390", 2),
    ("pistol", "03948459", 3), ("rocket", "04099429", 3), ("skateboard", "04225987", 3),
    ("table", "04379243", 3),
)  # fmt: skip
CATEGORIES = tuple(name for name, _, _ in CATEGORY_TABLE)
SYNSET_TO_LABEL = {synset: i for i, (_, synset, _) in enumerate(CATEGORY_TABLE)}
NUM_CATEGORIES = len(CATEGORY_TABLE)  # 16
NUM_PARTS = sum(n for _, _, n in CATEGORY_TABLE)  # 50


def _part_ranges() -> tuple[tuple[int, ...], ...]:
    starts = np.cumsum([0] + [n for _, _, n in CATEGORY_TABLE])
    return tuple(tuple(range(starts[i], starts[i + 1])) for i in range(NUM_CATEGORIES))


CATEGORY_PARTS = _part_ranges()  # category label -> its global part ids
PART_TO_CATEGORY = np.repeat(np.arange(NUM_CATEGORIES), [n for _, _, n in CATEGORY_TABLE])  # [50]


def category_part_mask(category_parts=CATEGORY_PARTS, num_parts: int | None = None) -> np.ndarray:
    """[num_categories, num_parts] bool: which part ids each category owns."""
    num_parts = num_parts or 1 + max(p for parts in category_parts for p in parts)
    mask = np.zeros((len(category_parts), num_parts), dtype=bool)
    for category, parts in enumerate(category_parts):
        mask[category, list(parts)] = True
    return mask


H5_SPLITS = ("train", "val", "test", "trainval")
TXT_SPLITS = ("train", "val", "test", "trainval")
NUM_STORED_POINTS = 2048


def load_shapenetpart_h5(root: str | Path, split: str, num_points: int | None = None) -> PartSegSet:
    """The hdf5 release; `root` is the folder holding the `ply_data_*.h5` files."""
    if split not in H5_SPLITS:
        raise ValueError(f"split must be one of {H5_SPLITS}, got {split!r}")
    root = require_dir(Path(root), "ShapeNetPart hdf5 folder")
    parts = ("train", "val") if split == "trainval" else (split,)
    files = []
    for part in parts:
        found = sorted_glob(root, f"*{part}*.h5")
        if not found:
            raise DatasetFormatError(f"{root}: no ShapeNetPart h5 files matching *{part}*.h5")
        files.extend(found)
    points, categories, part_labels, object_ids = [], [], [], []
    for path in files:
        arrays = read_h5(path, {"data": (None, None, 3), "label": (None,), "pid": (None, None)})
        if arrays["pid"].shape[1] != arrays["data"].shape[1]:
            raise DatasetFormatError(
                f"{path}: key 'pid' has {arrays['pid'].shape[1]} points per shape, "
                f"'data' {arrays['data'].shape[1]}"
            )
        category = check_label_range(arrays["label"], NUM_CATEGORIES, path, "label")
        pid = check_label_range(arrays["pid"], NUM_PARTS, path, "pid")
        check_parts_in_category(pid, category, str(path))
        points.append(first_points(arrays["data"].astype(np.float32, copy=False), num_points, path))
        part_labels.append(first_points(pid, num_points, path, "pid"))
        categories.append(category)
        object_ids.extend(f"{path.name}:{i}" for i in range(len(category)))
    return PartSegSet(
        points=np.concatenate(points),
        category=np.concatenate(categories),
        part_labels=np.concatenate(part_labels),
        category_names=CATEGORIES,
        source_files=tuple(str(p) for p in files),
        object_ids=tuple(object_ids),
    )


def check_parts_in_category(part_labels: np.ndarray, category: np.ndarray, where: str) -> None:
    """Every part id of shape i belongs to category[i]; else an error naming the first bad shape."""
    wrong = PART_TO_CATEGORY[part_labels] != category[:, None]  # [M, N]
    if wrong.any():
        shape, point = (int(i) for i in np.argwhere(wrong)[0])
        raise DatasetFormatError(
            f"{where}: shape {shape} is a {CATEGORIES[category[shape]]} but point {point} has part "
            f"id {part_labels[shape, point]} (its parts: {list(CATEGORY_PARTS[category[shape]])})"
        )


def load_shapenetpart_txt(
    root: str | Path,
    split: str,
    num_points: int = NUM_STORED_POINTS,
    seed: int = 0,
    normalize: bool = True,
    skip_bad: bool = False,
) -> PartSegSet:
    """The txt release; `root` is the folder
    `shapenetcore_partanno_segmentation_benchmark_v0_normal` itself.

    Each shape's `num_points` indices are drawn with replacement from a generator seeded by
    (seed, position in the split list), so a load is reproducible and independent of which other
    shapes load. `skip_bad=True` leaves out unreadable or inconsistent shapes and lists them in
    `skipped`; otherwise the first one raises.
    """
    if split not in TXT_SPLITS:
        raise ValueError(f"split must be one of {TXT_SPLITS}, got {split!r}")
    root = require_dir(Path(root), "ShapeNetPart txt folder")
    _check_category_file(root)
    entries = []
    for part in ("train", "val") if split == "trainval" else (split,):
        entries.extend(_split_entries(root, part))
    points, normals, categories, part_labels, object_ids, files, skipped = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for index, entry in enumerate(
        run_log.progress(entries, desc=f"ShapeNetPart {split}", unit="shape")
    ):
        synset, model_id = _parse_entry(entry, root)
        path = root / synset / f"{model_id}.txt"
        try:
            category = SYNSET_TO_LABEL.get(synset)
            if category is None:
                raise DatasetFormatError(f"{path}: synset {synset} is not a ShapeNetPart category")
            rows = _read_shape_txt(path)
            part = check_label_range(rows[:, 6], NUM_PARTS, path, "part column")
            check_parts_in_category(part[None], np.array([category]), str(path))
        except DatasetFormatError as e:
            if not skip_bad:
                raise
            skipped.append((str(path), str(e)))
            continue
        choice = np.random.default_rng([seed, index]).choice(len(rows), num_points, replace=True)
        # Normalised over all of the shape's points, then resampled (PointNet++ loaders' order).
        xyz = normalize_unit_sphere(rows[:, :3]) if normalize else rows[:, :3]
        points.append(xyz[choice])
        normals.append(rows[choice, 3:6])
        part_labels.append(part[choice])
        categories.append(category)
        object_ids.append(f"{synset}/{model_id}")
        files.append(str(path))
    if not points:
        raise DatasetFormatError(
            f"{root}: no readable shapes in split {split!r} ({len(skipped)} bad)"
        )
    return PartSegSet(
        points=np.stack(points).astype(np.float32, copy=False),
        category=np.asarray(categories, dtype=np.int32),
        part_labels=np.stack(part_labels).astype(np.int32, copy=False),
        category_names=CATEGORIES,
        source_files=tuple(files),
        object_ids=tuple(object_ids),
        normals=np.stack(normals).astype(np.float32, copy=False),
        skipped=tuple(skipped),
    )


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Subtracts the centroid and divides by the largest point norm."""
    centred = points - points.mean(axis=0)  # [N, 3]
    radius = np.sqrt((centred**2).sum(axis=1)).max()
    return centred / radius if radius > 0 else centred


def _split_entries(root: Path, split: str) -> list[str]:
    path = require_file(
        root / "train_test_split" / f"shuffled_{split}_file_list.json", "split list"
    )
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DatasetFormatError(
            f"{path}: expected a JSON list of 'shape_data/<synset>/<id>' strings"
        )
    return entries


def _parse_entry(entry: str, root: Path) -> tuple[str, str]:
    parts = entry.strip("/").split("/")
    if len(parts) < 2:
        raise DatasetFormatError(f"{root}: split entry {entry!r} is not 'shape_data/<synset>/<id>'")
    return parts[-2], parts[-1]


def _read_shape_txt(path: Path) -> np.ndarray:
    """[P, 7] float rows `x y z nx ny nz part`."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    try:
        rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise DatasetFormatError(f"{path}: not a table of numbers ({e})") from None
    if rows.shape[1] != 7 or rows.shape[0] == 0:
        raise DatasetFormatError(f"{path}: expected rows of 7 numbers, got shape {rows.shape}")
    return rows


def _check_category_file(root: Path) -> None:
    """`synsetoffset2category.txt`, when shipped, must agree with the built-in table."""
    path = root / "synsetoffset2category.txt"
    if not path.exists():
        return
    for line in read_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise DatasetFormatError(f"{path}: line {line!r} is not '<Name> <synset>'")
        name, synset = fields[0].lower(), fields[1]
        label = SYNSET_TO_LABEL.get(synset)
        if label is None or CATEGORIES[label] != name:
            raise DatasetFormatError(
                f"{path}: {name} {synset} does not match the ShapeNetPart category table"
            )
