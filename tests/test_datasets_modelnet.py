"""ModelNet h5 loaders on small files written in the real layouts (PointNet release and the
ModelNet10 folder of the MM-Point notebooks)."""

import json

import h5py
import numpy as np
import pytest

from mmpoint_jax.data.datasets import DatasetFormatError, load_modelnet10_h5, load_modelnet40_h5
from mmpoint_jax.data.datasets.modelnet import MODELNET10_CLASSES, MODELNET40_CLASSES

POINTS = 64


def write_h5(path, num_rows, first_label, **override):
    """A PointNet-style h5: gzip datasets, `label` (M, 1) uint8; data encodes row and point."""
    rows = np.arange(num_rows)
    data = np.zeros((num_rows, POINTS, 3), np.float32)
    data[:, :, 0] = first_label + rows[:, None]  # row identity survives concatenation
    data[:, :, 1] = np.arange(POINTS)[None, :]  # point order identity
    arrays = {
        "data": data,
        "label": ((first_label + rows) % 40).astype(np.uint8)[:, None],
        "normal": np.ones((num_rows, POINTS, 3), np.float32),
        "faceId": np.zeros((num_rows, POINTS), np.int32),
    }
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value, compression="gzip")


@pytest.fixture
def modelnet40_dir(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    # Written in reverse so that filesystem order would differ from the sorted order.
    for i, (rows, first) in reversed(list(enumerate([(3, 0), (2, 3)]))):
        write_h5(root / f"ply_data_train{i}.h5", rows, first)
        names = [f"class/shape_{first + r:04d}.ply" for r in range(rows)]
        (root / f"ply_data_train_{i}_id2file.json").write_text(json.dumps(names))
    write_h5(root / "ply_data_test0.h5", 2, 10)
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    return root


def test_reads_train_files_in_order_with_squeezed_labels(modelnet40_dir):
    train = load_modelnet40_h5(modelnet40_dir, "train")
    assert train.points.shape == (5, POINTS, 3) and train.points.dtype == np.float32
    assert train.labels.shape == (5,) and train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.points[:, 0, 0], np.arange(5))  # file 0 rows, then file 1
    np.testing.assert_array_equal(train.labels, np.arange(5))
    assert train.class_names == MODELNET40_CLASSES
    assert [p.rsplit("/", 1)[-1] for p in train.source_files] == [
        "ply_data_train0.h5",
        "ply_data_train1.h5",
    ]
    assert train.object_ids[3] == "class/shape_0003.ply"
    test = load_modelnet40_h5(modelnet40_dir, "test")
    np.testing.assert_array_equal(test.labels, [10, 11])
    assert test.object_ids == ("ply_data_test0.h5:0", "ply_data_test0.h5:1")  # no id2file json


def test_takes_the_first_points_in_stored_order(modelnet40_dir):
    train = load_modelnet40_h5(modelnet40_dir, "train", num_points=16, with_normals=True)
    assert train.points.shape == (5, 16, 3) and train.normals.shape == (5, 16, 3)
    np.testing.assert_array_equal(train.points[2, :, 1], np.arange(16))
    with pytest.raises(DatasetFormatError, match="cannot take 65"):
        load_modelnet40_h5(modelnet40_dir, "train", num_points=POINTS + 1)


def test_modelnet10_folder_layout(tmp_path):
    root = tmp_path / "modelnet10_hdf5_2048"
    root.mkdir()
    write_h5(root / "train0.h5", 4, 0)
    (root / "train0_id2file.json").write_text(json.dumps(["a", "b", "c", "d"]))
    write_h5(root / "test0.h5", 2, 0)
    train = load_modelnet10_h5(root, "train")
    assert train.class_names == MODELNET10_CLASSES
    assert train.object_ids == ("a", "b", "c", "d")
    write_h5(root / "test0.h5", 2, 9)  # labels 9, 10: 10 is not a ModelNet10 class
    with pytest.raises(DatasetFormatError, match=r"test0\.h5: key 'label' value 10"):
        load_modelnet10_h5(root, "test")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"label": None}, "missing key 'label'"),
        ({"data": np.zeros((3, POINTS, 2), np.float32)}, r"key 'data' has shape \(3, 64, 2\)"),
        ({"label": np.zeros((2, 1), np.uint8)}, "disagree on the number of rows"),
    ],
)
def test_bad_files_name_the_file_and_key(modelnet40_dir, override, message):
    write_h5(modelnet40_dir / "ply_data_train0.h5", 3, 0, **override)
    with pytest.raises(DatasetFormatError, match=message) as error:
        load_modelnet40_h5(modelnet40_dir, "train")
    assert "ply_data_train0.h5" in str(error.value)


def test_missing_folder_files_and_bad_id2file(tmp_path, modelnet40_dir):
    with pytest.raises(DatasetFormatError, match="folder not found"):
        load_modelnet40_h5(tmp_path / "nope", "train")
    with pytest.raises(DatasetFormatError, match="no 'train' h5 files"):
        load_modelnet40_h5(tmp_path, "train")
    (modelnet40_dir / "ply_data_train_1_id2file.json").write_text(json.dumps(["only one"]))
    with pytest.raises(DatasetFormatError, match="lists 1 names but .*ply_data_train1.h5 holds 2"):
        load_modelnet40_h5(modelnet40_dir, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_modelnet40_h5(modelnet40_dir, "val")


def test_subset_keeps_rows_aligned(modelnet40_dir):
    train = load_modelnet40_h5(modelnet40_dir, "train", with_normals=True)
    part = train.subset(np.array([4, 1]))
    np.testing.assert_array_equal(part.labels, [4, 1])
    np.testing.assert_array_equal(part.points[:, 0, 0], [4, 1])
    assert part.object_ids == (train.object_ids[4], train.object_ids[1])
    assert part.normals.shape == (2, POINTS, 3) and len(part) == 2
