"""ShapeNetPart: the category -> part table, the hdf5 loader and the txt loader with its json
split lists, on small files in the real layouts."""

import json

import h5py
import numpy as np
import pytest

from mmpoint_jax.data.datasets import (
    DatasetFormatError,
    load_shapenetpart_h5,
    load_shapenetpart_txt,
)
from mmpoint_jax.data.datasets import shapenetpart as spp

POINTS = 64


def test_category_table_matches_data_formats_a5():
    assert spp.NUM_CATEGORIES == 16 and spp.NUM_PARTS == 50
    assert spp.CATEGORY_PARTS[0] == (0, 1, 2, 3)  # airplane
    assert spp.CATEGORY_PARTS[10] == tuple(range(30, 36))  # motorbike, 6 parts
    assert spp.CATEGORY_PARTS[15] == (47, 48, 49)  # table
    assert spp.SYNSET_TO_LABEL["03001627"] == 4  # chair
    mask = spp.category_part_mask()
    assert mask.shape == (16, 50) and (mask.sum(axis=0) == 1).all()  # each part in one category
    for category, parts in enumerate(spp.CATEGORY_PARTS):
        assert (spp.PART_TO_CATEGORY[list(parts)] == category).all()


def shapes_of(categories, rng):
    """pid (S, POINTS) drawn from each category's own parts."""
    return np.stack([rng.choice(spp.CATEGORY_PARTS[c], POINTS) for c in categories])


def write_h5(path, categories, tag, rng, pid=None):
    categories = np.asarray(categories)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.full((len(categories), POINTS, 3), tag, np.float32))
        f.create_dataset("label", data=categories.astype(np.uint8)[:, None])
        pid = shapes_of(categories, rng) if pid is None else pid
        f.create_dataset("pid", data=pid.astype(np.uint8))


@pytest.fixture
def h5_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "shapenet_part_seg_hdf5_data"
    root.mkdir()
    write_h5(root / "ply_data_train1.h5", [3, 4], 1.0, rng)
    write_h5(root / "ply_data_train0.h5", [0, 1, 2], 0.0, rng)
    write_h5(root / "ply_data_val0.h5", [5], 2.0, rng)
    write_h5(root / "ply_data_test0.h5", [15, 10], 3.0, rng)
    return root


def test_h5_splits_and_trainval_order(h5_dir):
    train = load_shapenetpart_h5(h5_dir, "train")
    np.testing.assert_array_equal(train.category, [0, 1, 2, 3, 4])
    assert train.part_labels.shape == (5, POINTS) and train.part_labels.dtype == np.int32
    trainval = load_shapenetpart_h5(h5_dir, "trainval", num_points=32)
    np.testing.assert_array_equal(trainval.points[:, 0, 0], [0, 0, 0, 1, 1, 2])  # train, then val
    assert trainval.points.shape == (6, 32, 3) and trainval.part_labels.shape == (6, 32)
    test = load_shapenetpart_h5(h5_dir, "test")
    np.testing.assert_array_equal(test.category, [15, 10])
    assert test.category_names[15] == "table"
    for shape, category in zip(test.part_labels, test.category, strict=True):
        assert set(shape.tolist()) <= set(spp.CATEGORY_PARTS[category])


def test_h5_part_outside_its_category_is_an_error(h5_dir):
    pid = np.zeros((1, POINTS), np.uint8)
    pid[0, 7] = 12  # a chair part on an earphone
    pid[0, :7] = pid[0, 8:] = 16
    write_h5(h5_dir / "ply_data_val0.h5", [5], 2.0, None, pid=pid)
    message = r"ply_data_val0.h5: shape 0 is a earphone but point 7"
    with pytest.raises(DatasetFormatError, match=message):
        load_shapenetpart_h5(h5_dir, "val")
    with pytest.raises(DatasetFormatError, match=r"no ShapeNetPart h5 files matching \*test\*"):
        load_shapenetpart_h5(h5_dir.parent, "test")


def write_txt_release(root, shapes):
    """shapes: list of (split, synset, model_id, rows [P, 7])."""
    (root / "train_test_split").mkdir(parents=True)
    lines = [f"{name.capitalize()}\t{synset}" for name, synset, _ in spp.CATEGORY_TABLE]
    (root / "synsetoffset2category.txt").write_text("\n".join(lines) + "\n")
    for split in ("train", "val", "test"):
        entries = [f"shape_data/{s}/{m}" for sp, s, m, _ in shapes if sp == split]
        split_file = root / "train_test_split" / f"shuffled_{split}_file_list.json"
        split_file.write_text(json.dumps(entries))
    for _, synset, model_id, rows in shapes:
        (root / synset).mkdir(exist_ok=True)
        np.savetxt(root / synset / f"{model_id}.txt", rows, fmt="%.6f")


def txt_rows(num_points, category, rng, offset=5.0):
    rows = np.zeros((num_points, 7))
    rows[:, :3] = rng.normal(size=(num_points, 3)) * 2 + offset
    rows[:, 3:6] = rng.normal(size=(num_points, 3))
    rows[:, 6] = rng.choice(spp.CATEGORY_PARTS[category], num_points)
    return rows


@pytest.fixture
def txt_dir(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    write_txt_release(
        root,
        [
            ("train", "02691156", "plane_a", txt_rows(50, 0, rng)),
            ("train", "04379243", "table_a", txt_rows(90, 15, rng)),
            ("val", "03001627", "chair_a", txt_rows(70, 4, rng)),
            ("test", "03797390", "mug_a", txt_rows(30, 11, rng)),
        ],
    )
    return root


def test_txt_resamples_normalises_and_is_reproducible(txt_dir):
    train = load_shapenetpart_txt(txt_dir, "train", num_points=POINTS, seed=3)
    assert train.points.shape == (2, POINTS, 3) and train.normals.shape == (2, POINTS, 3)
    np.testing.assert_array_equal(train.category, [0, 15])
    assert train.object_ids == ("02691156/plane_a", "04379243/table_a")
    assert np.linalg.norm(train.points, axis=2).max() <= 1.0 + 1e-6  # inside the unit sphere
    again = load_shapenetpart_txt(txt_dir, "train", num_points=POINTS, seed=3)
    np.testing.assert_array_equal(train.points, again.points)
    other = load_shapenetpart_txt(txt_dir, "train", num_points=POINTS, seed=4)
    assert not np.array_equal(train.points, other.points)
    # Each point is an original point, normalised over the whole shape, with its own part label.
    rows = np.loadtxt(txt_dir / "02691156" / "plane_a.txt").astype(np.float32)
    original = spp.normalize_unit_sphere(rows[:, :3])
    distance = np.abs(original[None] - train.points[0][:, None]).sum(-1)  # [POINTS, 50]
    np.testing.assert_allclose(distance.min(axis=1), 0, atol=1e-6)
    np.testing.assert_array_equal(train.part_labels[0], rows[distance.argmin(axis=1), 6])
    np.testing.assert_allclose(np.linalg.norm(original, axis=1).max(), 1.0, rtol=1e-6)
    trainval = load_shapenetpart_txt(txt_dir, "trainval", num_points=POINTS, normalize=False)
    np.testing.assert_array_equal(trainval.category, [0, 15, 4])
    assert trainval.points.mean() > 3  # raw coordinates kept


def test_txt_bad_shape_raises_or_is_skipped_and_reported(txt_dir):
    (txt_dir / "03797390" / "mug_a.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DatasetFormatError, match=r"mug_a.txt: expected rows of 7 numbers"):
        load_shapenetpart_txt(txt_dir, "test")
    with pytest.raises(DatasetFormatError, match=r"no readable shapes .* \(1 bad\)"):
        load_shapenetpart_txt(txt_dir, "test", skip_bad=True)
    rng = np.random.default_rng(2)
    wrong = txt_rows(40, 11, rng)
    wrong[3, 6] = 0  # an airplane part on a mug
    np.savetxt(txt_dir / "03797390" / "mug_b.txt", wrong)
    np.savetxt(txt_dir / "03797390" / "mug_c.txt", txt_rows(40, 11, rng))
    entries = [f"shape_data/03797390/mug_{x}" for x in "abc"]
    split_file = txt_dir / "train_test_split" / "shuffled_test_file_list.json"
    split_file.write_text(json.dumps(entries))
    test = load_shapenetpart_txt(txt_dir, "test", num_points=POINTS, skip_bad=True)
    assert test.object_ids == ("03797390/mug_c",)
    assert [path.rsplit("/", 1)[-1] for path, _ in test.skipped] == ["mug_a.txt", "mug_b.txt"]
    assert "is a mug but point 3 has part id 0" in test.skipped[1][1]


def test_txt_category_file_must_agree(txt_dir):
    (txt_dir / "synsetoffset2category.txt").write_text("Airplane\t03001627\n")
    with pytest.raises(DatasetFormatError, match="synsetoffset2category.txt: airplane 03001627"):
        load_shapenetpart_txt(txt_dir, "train")
