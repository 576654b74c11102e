"""ScanObjectNN loaders on small files in the release layout (`main_split[_nobg]/`) and in
CrossPoint's renamed `main_split/{train,test}.h5`."""

import h5py
import numpy as np
import pytest

from mmpoint_jax.data.datasets import DatasetFormatError, load_scanobjectnn_h5, scanobjectnn_file
from mmpoint_jax.data.datasets.scanobjectnn import CLASSES

POINTS = 64


def write_h5(path, num_rows, tag, with_mask=True, label_shape=None):
    """`tag` goes into every coordinate so a test can tell which file was read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = (np.arange(num_rows) % len(CLASSES)).astype(np.int64)
    with h5py.File(path, "w") as f:
        f["data"] = np.full((num_rows, POINTS, 3), tag, np.float32)
        f["label"] = labels.reshape(label_shape or (num_rows,))
        if with_mask:
            mask = np.zeros((num_rows, POINTS), np.int64)
            mask[:, POINTS // 2 :] = -1  # second half is background
            f["mask"] = mask


@pytest.fixture
def h5_files(tmp_path):
    write_h5(tmp_path / "main_split" / "training_objectdataset.h5", 5, 1.0)
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", 3, 2.0)
    write_h5(tmp_path / "main_split_nobg" / "training_objectdataset.h5", 5, 3.0)
    write_h5(tmp_path / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", 4, 4.0)
    write_h5(tmp_path / "split2_nobg" / "training_objectdataset_augmented25rot.h5", 2, 5.0)
    write_h5(tmp_path / "main_split" / "train.h5", 6, 6.0, with_mask=False)
    return tmp_path


@pytest.mark.parametrize(
    "variant, split, kwargs, tag, rows",
    [
        ("OBJ_BG", "train", {}, 1.0, 5),
        ("OBJ_BG", "test", {}, 2.0, 3),
        ("OBJ_ONLY", "train", {}, 3.0, 5),
        ("PB_T50_RS", "test", {}, 4.0, 4),
        ("PB_T25_R", "train", {"background": False, "split_folder": "split2"}, 5.0, 2),
        ("crosspoint", "train", {}, 6.0, 6),
    ],
)
def test_each_variant_reads_its_own_file(h5_files, variant, split, kwargs, tag, rows):
    dataset = load_scanobjectnn_h5(h5_files, split, variant, **kwargs)
    assert dataset.points.shape == (rows, POINTS, 3)
    assert np.all(dataset.points == tag)
    np.testing.assert_array_equal(dataset.labels, np.arange(rows) % 15)
    assert dataset.labels.dtype == np.int32 and dataset.class_names == CLASSES


def test_mask_is_read_and_cut_like_the_points(h5_files):
    dataset = load_scanobjectnn_h5(h5_files, "train", "OBJ_BG", num_points=40)
    assert dataset.points.shape == (5, 40, 3) and dataset.mask.shape == (5, 40)
    assert (dataset.mask[:, 32:] == -1).all() and (dataset.mask[:, :32] == 0).all()
    assert load_scanobjectnn_h5(h5_files, "train", "crosspoint").mask is None


def test_root_may_be_the_split_folder_itself(h5_files):
    path = scanobjectnn_file(h5_files / "main_split", "OBJ_BG", "test")
    assert path == h5_files / "main_split" / "test_objectdataset.h5"


def test_labels_stored_as_column_are_squeezed(tmp_path):
    write_h5(tmp_path / "main_split" / "test.h5", 4, 0.0, label_shape=(4, 1))
    assert load_scanobjectnn_h5(tmp_path, "test", "crosspoint").labels.shape == (4,)


def test_errors_name_the_file_and_key(h5_files):
    missing = "looked for .*main_split/test_objectdataset_augmentedrot.h5"
    with pytest.raises(DatasetFormatError, match=missing):
        load_scanobjectnn_h5(h5_files, "test", "PB_T50_R")
    with pytest.raises(ValueError, match="unknown ScanObjectNN variant"):
        load_scanobjectnn_h5(h5_files, "test", "OBJ_BGG")
    with pytest.raises(ValueError, match="OBJ_ONLY is the variant without background"):
        load_scanobjectnn_h5(h5_files, "train", "OBJ_ONLY", background=True)
    bad = h5_files / "main_split" / "test_objectdataset.h5"
    with h5py.File(bad, "a") as f:
        del f["mask"]
        f["mask"] = np.zeros((3, POINTS + 1))
    with pytest.raises(DatasetFormatError, match="test_objectdataset.h5: key 'mask' has 65 points"):
        load_scanobjectnn_h5(h5_files, "test", "OBJ_BG")
    with h5py.File(bad, "a") as f:
        del f["mask"], f["label"]
        f["label"] = np.full((3,), 15)
    with pytest.raises(DatasetFormatError, match="key 'label' value 15 .* outside"):
        load_scanobjectnn_h5(h5_files, "test", "OBJ_BG")
