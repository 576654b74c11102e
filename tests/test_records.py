import msgpack
import numpy as np
import pytest

from mmpoint_jax.data import records


def _example(num_views=3, size=(16, 20), n=32, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        object_id="03001627/abc",
        points=rng.normal(size=(n, 3)).astype(np.float32),
        normals=rng.normal(size=(n, 3)).astype(np.float32),
        views=rng.integers(0, 256, size=(num_views, *size, 3), dtype=np.uint8),
        intrinsics=rng.normal(size=(num_views, 3, 3)).astype(np.float32),
        extrinsics=rng.normal(size=(num_views, 4, 4)).astype(np.float32),
        label=7,
        class_name="chair",
        meta={"source": "x.obj", "preset": "r2n2"},
    )


def test_round_trip_is_exact():
    ex = _example()
    out = records.decode(records.encode(**ex))
    assert (
        out["object_id"] == ex["object_id"] and out["label"] == 7 and out["class_name"] == "chair"
    )
    for key in ("points", "normals", "views", "intrinsics", "extrinsics"):
        np.testing.assert_array_equal(out[key], ex[key])
        assert out[key].dtype == ex[key].dtype
    assert (
        out["image_size"] == (16, 20) and out["num_views"] == 3 and out["meta"]["preset"] == "r2n2"
    )


def test_decode_selected_views_only():
    ex = _example(num_views=5)
    out = records.decode(records.encode(**ex), views=[4, 1])
    np.testing.assert_array_equal(out["views"], ex["views"][[4, 1]])
    np.testing.assert_array_equal(out["view_indices"], [4, 1])
    with pytest.raises(records.RecordError, match="view 5"):
        records.decode(records.encode(**ex), views=[5])


def test_truncated_and_foreign_records_raise():
    data = records.encode(**_example())
    with pytest.raises(records.RecordError, match="truncated"):
        records.decode(data[: len(data) // 2])
    with pytest.raises(records.RecordError, match="schema"):
        records.decode(msgpack.packb({"a": 1}))
    bad_version = msgpack.unpackb(data)
    bad_version["version"] = 99
    with pytest.raises(records.RecordError, match="version 99"):
        records.decode(msgpack.packb(bad_version, use_bin_type=True))


def test_encode_rejects_bad_points():
    ex = _example()
    ex["points"][3, 1] = np.nan
    with pytest.raises(records.RecordError, match="NaN"):
        records.encode(**ex)


def test_shard_write_read(tmp_path):
    blobs = [records.encode(**_example(seed=i)) for i in range(4)]
    path = tmp_path / records.shard_name("train", 0, 1)
    assert records.write_shard(path, blobs) == 4
    assert records.read_shard(path) == blobs
    assert records.list_shards(tmp_path, "train") == [path]
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
