"""S3DIS blocks as PointNet/DGCNN ship them (`indoor3d_sem_seg_hdf5_data`, DATA_FORMATS.md A6),
the Area-k split and the 6-fold protocol.

Files: `ply_data_all_<i>.h5` (keys `data` (B, 4096, 9), `label` (B, 4096) in 0..12), listed in
`all_files.txt`, and `room_filelist.txt` with one room name per block in h5 row order. The
rows of the h5 files must be read in `all_files.txt` order for that list to line up (plain
sorting would put `_10` before `_2`); without `all_files.txt` the files are taken in natural
order. DGCNN's non-overlapping test blocks (`indoor3d_sem_seg_hdf5_data_test/`) have the same
layout.

A block is in Area k iff its room name starts with `Area_k_` (the references test the
substring `Area_k`, the same for S3DIS's six areas).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mmpoint_jax.data.datasets.common import (
    DatasetFormatError,
    SemSegSet,
    check_label_range,
    read_h5,
    read_lines,
    require_dir,
    require_file,
    sorted_glob,
)

CLASSES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)  # fmt: skip
AREAS = (1, 2, 3, 4, 5, 6)
NUM_CHANNELS = 9
_ROOM_AREA = re.compile(r"Area_(\d+)_")


def area_of_room(room: str) -> int:
    """`Area_5_office_1` -> 5."""
    match = _ROOM_AREA.match(room)
    if match is None:
        raise DatasetFormatError(f"room name {room!r} does not start with 'Area_<k>_'")
    return int(match.group(1))


def block_files(root: Path) -> list[Path]:
    """The h5 files in `all_files.txt` order (entries are resolved by file name inside `root`)."""
    listing = root / "all_files.txt"
    if listing.exists():
        files = [root / Path(line).name for line in read_lines(listing)]
        for path in files:
            require_file(path, f"h5 file listed in {listing}")
        return files
    files = sorted_glob(root, "ply_data_all_*.h5")
    if not files:
        raise DatasetFormatError(f"{root}: no all_files.txt and no ply_data_all_*.h5 files")
    return files


def load_s3dis_h5(root: str | Path, areas: Iterable[int] | None = None) -> SemSegSet:
    """The blocks in `root` (the `indoor3d_sem_seg_hdf5_data` folder), optionally only those of
    `areas`: only their rows are read, so evaluating Area 5 does not hold all 3.5 GB in memory.
    """
    root = require_dir(Path(root), "S3DIS h5 folder")
    room_list = root / "room_filelist.txt"
    rooms = read_lines(require_file(room_list, "S3DIS room list"))
    block_areas = np.array([area_of_room(r) for r in rooms])
    wanted = np.ones(len(rooms), bool) if areas is None else np.isin(block_areas, list(areas))
    files = block_files(root)
    blocks, labels, kept_rooms = [], [], []
    offset = 0
    for path in files:
        num_rows = _num_rows(path)
        if offset + num_rows > len(rooms):
            raise DatasetFormatError(
                f"{room_list}: lists {len(rooms)} blocks but the h5 files hold more (at {path})"
            )
        rows = np.flatnonzero(wanted[offset : offset + num_rows])
        if len(rows):
            every_row = len(rows) == num_rows  # a whole-file read is faster than a row selection
            arrays = read_h5(
                path,
                {"data": (None, None, NUM_CHANNELS), "label": (None, None)},
                rows=None if every_row else rows,
            )
            if arrays["label"].shape[1] != arrays["data"].shape[1]:
                raise DatasetFormatError(
                    f"{path}: 'label' has {arrays['label'].shape[1]} points per block, "
                    f"'data' {arrays['data'].shape[1]}"
                )
            blocks.append(arrays["data"].astype(np.float32, copy=False))
            labels.append(check_label_range(arrays["label"], len(CLASSES), path, "label"))
            kept_rooms.extend(rooms[offset + i] for i in rows)
        offset += num_rows
    if offset != len(rooms):
        raise DatasetFormatError(
            f"{room_list}: lists {len(rooms)} blocks but the h5 files hold {offset}"
        )
    if not blocks:
        raise DatasetFormatError(f"{root}: no blocks in areas {sorted(set(areas or ()))}")
    return SemSegSet(
        blocks=np.concatenate(blocks),
        labels=np.concatenate(labels),
        rooms=tuple(kept_rooms),
        class_names=CLASSES,
        source_files=tuple(str(p) for p in files),
    )


def _num_rows(path: Path) -> int:
    import h5py

    with h5py.File(require_file(path, "S3DIS h5 file"), "r") as f:
        if "data" not in f:
            raise DatasetFormatError(
                f"{path}: missing key 'data' (keys present: {sorted(f.keys())})"
            )
        return int(f["data"].shape[0])


def area_split_indices(rooms: Iterable[str], test_area: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): test = the blocks of `test_area`, train = all others."""
    block_areas = np.array([area_of_room(r) for r in rooms])
    if test_area not in block_areas:
        raise DatasetFormatError(
            f"no blocks of Area_{test_area} (areas present: {sorted(set(block_areas))})"
        )
    return np.flatnonzero(block_areas != test_area), np.flatnonzero(block_areas == test_area)


def six_fold_indices(rooms: Iterable[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """[(held-out area, train indices, test indices)] for each area present, in area order.

    The 6-fold score pools the confusion counts of all held-out areas
    (`mmpoint_jax.evaluate.metrics.pool_confusions`), it does not average six mIoUs.
    """
    rooms = list(rooms)
    present = sorted({area_of_room(r) for r in rooms})
    return [(area, *area_split_indices(rooms, area)) for area in present]
