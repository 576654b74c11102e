"""S3DIS blocks (`indoor3d_sem_seg_hdf5_data` layout): file order, room alignment, the Area-k
split and the 6-fold helper, on small files."""

import h5py
import numpy as np
import pytest

from mmpoint_jax.data.datasets import (
    DatasetFormatError,
    area_split_indices,
    load_s3dis_h5,
    six_fold_indices,
)
from mmpoint_jax.data.datasets.s3dis import CLASSES, area_of_room

POINTS = 16
NUM_FILES = 11  # enough that plain sorting (`_10` before `_2`) would misalign the rooms


def make_release(root, with_all_files=True):
    """11 files of 2 blocks; block b has data[..., 0] == b and lies in Area (b % 6) + 1."""
    root.mkdir(parents=True, exist_ok=True)
    rooms = []
    for i in range(NUM_FILES):
        block_ids = np.arange(2 * i, 2 * i + 2)
        data = np.zeros((2, POINTS, 9), np.float32)
        data[..., 0] = block_ids[:, None]
        labels = ((block_ids[:, None] + np.arange(POINTS)) % len(CLASSES)).astype(np.uint8)
        with h5py.File(root / f"ply_data_all_{i}.h5", "w") as f:
            f.create_dataset("data", data=data, compression="gzip")
            f.create_dataset("label", data=labels, compression="gzip")
        rooms += [f"Area_{b % 6 + 1}_office_{b}" for b in block_ids]
    (root / "room_filelist.txt").write_text("\n".join(rooms) + "\n")
    if with_all_files:
        listed = [f"indoor3d_sem_seg_hdf5_data/ply_data_all_{i}.h5" for i in range(NUM_FILES)]
        (root / "all_files.txt").write_text("\n".join(listed) + "\n")
    return rooms


@pytest.mark.parametrize("with_all_files", [True, False])
def test_blocks_line_up_with_their_rooms(tmp_path, with_all_files):
    root = tmp_path / "indoor3d_sem_seg_hdf5_data"
    rooms = make_release(root, with_all_files)
    dataset = load_s3dis_h5(root)
    assert dataset.blocks.shape == (2 * NUM_FILES, POINTS, 9) and dataset.labels.dtype == np.int32
    np.testing.assert_array_equal(dataset.blocks[:, 0, 0], np.arange(2 * NUM_FILES))
    assert dataset.rooms == tuple(rooms)
    assert dataset.source_files[2].endswith("ply_data_all_2.h5")
    assert dataset.class_names == CLASSES and dataset.num_classes == 13


def test_reading_only_some_areas_keeps_the_alignment(tmp_path):
    root = tmp_path / "s3dis"
    make_release(root)
    area5 = load_s3dis_h5(root, areas=[5])
    expected = [b for b in range(2 * NUM_FILES) if b % 6 + 1 == 5]
    np.testing.assert_array_equal(area5.blocks[:, 0, 0], expected)
    assert all(area_of_room(r) == 5 for r in area5.rooms)
    np.testing.assert_array_equal(area5.labels[:, 0], np.array(expected) % 13)
    with pytest.raises(DatasetFormatError, match="no blocks in areas"):
        load_s3dis_h5(root, areas=[7])


def test_area_split_and_six_fold(tmp_path):
    rooms = ["Area_1_a", "Area_5_b", "Area_2_c", "Area_5_d", "Area_6_e"]
    train, test = area_split_indices(rooms, 5)
    np.testing.assert_array_equal(train, [0, 2, 4])
    np.testing.assert_array_equal(test, [1, 3])
    folds = six_fold_indices(rooms)
    assert [area for area, _, _ in folds] == [1, 2, 5, 6]
    held_out = np.sort(np.concatenate([test for _, _, test in folds]))
    np.testing.assert_array_equal(held_out, np.arange(5))  # every block held out exactly once
    for _, train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == 5
    with pytest.raises(DatasetFormatError, match="no blocks of Area_3"):
        area_split_indices(rooms, 3)
    with pytest.raises(DatasetFormatError, match="does not start with 'Area_<k>_'"):
        area_of_room("office_1")


def test_mismatched_room_list_and_bad_files(tmp_path):
    root = tmp_path / "s3dis"
    rooms = make_release(root)
    (root / "room_filelist.txt").write_text("\n".join(rooms[:-1]) + "\n")
    with pytest.raises(DatasetFormatError, match="room_filelist.txt: lists 21 blocks but"):
        load_s3dis_h5(root)
    (root / "room_filelist.txt").write_text("\n".join(rooms) + "\n")
    (root / "ply_data_all_3.h5").unlink()
    with pytest.raises(DatasetFormatError, match="ply_data_all_3.h5"):
        load_s3dis_h5(root)
    with h5py.File(root / "ply_data_all_3.h5", "w") as f:
        f["data"] = np.zeros((2, POINTS, 6), np.float32)
        f["label"] = np.zeros((2, POINTS), np.uint8)
    bad_shape = r"ply_data_all_3.h5: key 'data' has shape \(2, 16, 6\)"
    with pytest.raises(DatasetFormatError, match=bad_shape):
        load_s3dis_h5(root)
    with h5py.File(root / "ply_data_all_3.h5", "w") as f:
        f["data"] = np.zeros((2, POINTS, 9), np.float32)
        f["label"] = np.full((2, POINTS), 13, np.uint8)
    with pytest.raises(DatasetFormatError, match="key 'label' value 13"):
        load_s3dis_h5(root)
