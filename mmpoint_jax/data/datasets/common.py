"""What every real-format loader shares: the returned dataclasses, the format error, and the
checked reading of HDF5 keys, label arrays and file lists.

Loaders return plain numpy (no JAX, no torch): the evaluation code, the fine-tune pipelines
and the render stage's importers all start from these arrays. Every error names the file and,
where there is one, the HDF5 key or the row.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class DatasetFormatError(ValueError):
    """A dataset file is missing, lacks a key, or holds an array of the wrong shape or range."""


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value to compare
class PointCloudSet:
    """Labelled point clouds of one split (ModelNet, ScanObjectNN).

    `object_ids[i]` names row i: the source shape when the release says it (ModelNet40's
    `*_id2file.json`), else `"<h5 file name>:<row>"`.
    """

    points: np.ndarray  # [M, N, 3] float32, stored point order
    labels: np.ndarray  # [M] int32
    class_names: tuple[str, ...]
    source_files: tuple[str, ...]  # files read, in reading order
    object_ids: tuple[str, ...]
    mask: np.ndarray | None = None  # [M, N] int32 (ScanObjectNN: object instance id, -1 background)
    normals: np.ndarray | None = None  # [M, N, 3] float32 (ModelNet40 h5 `normal`)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: np.ndarray) -> PointCloudSet:
        """The rows `indices` (in that order), every per-row field alike."""
        return _take_rows(self, indices, ("points", "labels", "mask", "normals", "object_ids"))


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value to compare
class PartSegSet:
    """ShapeNetPart shapes: points, the object category and a global part id per point."""

    points: np.ndarray  # [M, N, 3] float32
    category: np.ndarray  # [M] int32 in 0..15
    part_labels: np.ndarray  # [M, N] int32, global part ids 0..49
    category_names: tuple[str, ...]
    source_files: tuple[str, ...]
    object_ids: tuple[str, ...]
    normals: np.ndarray | None = None  # [M, N, 3] float32 (txt variant only)
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason) of shapes left out

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def subset(self, indices: np.ndarray) -> PartSegSet:
        return _take_rows(
            self, indices, ("points", "category", "part_labels", "normals", "object_ids")
        )


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value to compare
class SemSegSet:
    """S3DIS blocks with a label per point and the room each block was cut from."""

    blocks: np.ndarray  # [B, N, 9] float32 (xyz centred, rgb/255, xyz/room max)
    labels: np.ndarray  # [B, N] int32 in 0..12
    rooms: tuple[str, ...]  # [B] e.g. "Area_5_office_1"
    class_names: tuple[str, ...]
    source_files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: np.ndarray) -> SemSegSet:
        return _take_rows(self, indices, ("blocks", "labels", "rooms"))


def _take_rows(dataset, indices: np.ndarray, row_fields: Sequence[str]):
    indices = np.asarray(indices, dtype=np.int64)
    changes = {}
    for name in row_fields:
        value = getattr(dataset, name)
        if value is None:
            continue
        if isinstance(value, tuple):
            changes[name] = tuple(value[i] for i in indices)
        else:
            changes[name] = value[indices]
    return dataclasses.replace(dataset, **changes)


def natural_key(path: str | os.PathLike) -> list:
    """Sort key under which `x_2.h5` comes before `x_10.h5` (plain sorting puts 10 first)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", os.fspath(path))]


def sorted_glob(folder: Path, pattern: str) -> list[Path]:
    """`folder.glob(pattern)` in natural order: filesystem order differs between machines."""
    return sorted(folder.glob(pattern), key=natural_key)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetFormatError(f"{what}: folder not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetFormatError(f"{what}: file not found: {path}")
    return path


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text side file."""
    require_file(path, "text list")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _open_h5(path: Path):
    import h5py

    require_file(path, "HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetFormatError(f"{path}: not a readable HDF5 file ({e})") from None


def h5_keys(path: Path) -> tuple[str, ...]:
    with _open_h5(path) as f:
        return tuple(f.keys())


def read_h5(
    path: Path,
    shapes: dict[str, tuple[int | None, ...]],
    optional: Sequence[str] = (),
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Reads the datasets named in `shapes`, checking each against its expected shape.

    `shapes` maps key -> shape with `None` for a free axis; a trailing `(..., 1)` axis of a
    label array is accepted where the spec says `(M,)` (releases differ). Keys in `optional`
    may be missing (then absent from the result). `rows` reads only those rows (sorted,
    increasing: what HDF5 selection allows). All arrays must agree on the row count.
    """
    out: dict[str, np.ndarray] = {}
    with _open_h5(path) as f:
        for key, shape in shapes.items():
            if key not in f:
                if key in optional:
                    continue
                raise DatasetFormatError(
                    f"{path}: missing key '{key}' (keys present: {sorted(f.keys())})"
                )
            dataset = f[key]
            array = np.asarray(dataset[rows] if rows is not None else dataset[()])
            out[key] = _check_shape(array, shape, path, key)
    counts = {key: a.shape[0] for key, a in out.items()}
    if len(set(counts.values())) > 1:
        raise DatasetFormatError(f"{path}: keys disagree on the number of rows: {counts}")
    return out


def _check_shape(
    array: np.ndarray, shape: tuple[int | None, ...], path: Path, key: str
) -> np.ndarray:
    if len(shape) == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # labels stored as (M, 1), e.g. ModelNet40 and ShapeNetPart
    ok = array.ndim == len(shape) and all(
        e is None or e == a for e, a in zip(shape, array.shape, strict=True)
    )
    if not ok:
        expected = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
        raise DatasetFormatError(
            f"{path}: key '{key}' has shape {array.shape}, expected {expected}"
        )
    return array


def check_label_range(
    labels: np.ndarray, num_classes: int, path: str | Path, key: str
) -> np.ndarray:
    """Labels as int32, every one in [0, num_classes); else an error naming the first bad row."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise DatasetFormatError(f"{path}: key '{key}' holds non-integer labels")
        labels = as_int
    bad = np.argwhere((labels < 0) | (labels >= num_classes))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise DatasetFormatError(
            f"{path}: key '{key}' value {labels[where]} at index {where} is outside "
            f"[0, {num_classes}) ({len(bad)} such values)"
        )
    return labels.astype(np.int32)


def first_points(
    points: np.ndarray, num_points: int | None, path: str | Path, key: str = "data"
) -> np.ndarray:
    """The first `num_points` of each cloud in stored order, as the reference loaders take them."""
    if num_points is None:
        return points
    if num_points <= 0 or num_points > points.shape[1]:
        raise DatasetFormatError(
            f"{path}: key '{key}' holds {points.shape[1]} points per cloud; "
            f"cannot take {num_points}"
        )
    return np.ascontiguousarray(points[:, :num_points])  # a view would pin all stored points
