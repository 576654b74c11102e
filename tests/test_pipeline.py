import json

import numpy as np
import pytest
from PIL import Image

from mmpoint_jax.data import pipeline, records
from mmpoint_jax.data.pipeline_testing import synthetic_record, write_split

NUM_RECORDS = 10  # over 3 shards; a global batch of 4 leaves a remainder of 2 per epoch
STORED_POINTS = 64
STORED_VIEWS = 4
SIZE = 32


def _blobs(num_records=NUM_RECORDS, num_views=STORED_VIEWS, num_points=STORED_POINTS):
    return [synthetic_record(i, num_points, num_views, SIZE) for i in range(num_records)]


def _shards(blobs, num_shards=3):
    return [list(part) for part in np.array_split(np.array(blobs, dtype=object), num_shards)]


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    return write_split(
        tmp_path_factory.mktemp("records"), "train", _shards(_blobs()), ["c0", "c1", "c2"]
    )


def _pipeline(records_dir, **overrides):
    kwargs = dict(
        global_batch_size=4,
        num_views=2,
        image_size=SIZE,
        num_points=48,
        seed=0,
        num_workers=0,
        process_index=0,
        process_count=1,
    )
    kwargs.update(overrides)
    return pipeline.PretrainPipeline(records_dir, "train", **kwargs)


def _take(pipe, steps):
    with pipe:
        return [next(pipe) for _ in range(steps)]


def _object_number(points, blobs):
    """Which record a batch row came from (points are unique per record)."""
    for i, blob in enumerate(blobs):
        stored = records.decode(blob, views=None)["points"]
        n = min(len(stored), len(points))
        if np.array_equal(stored[:n], points[:n]):
            return i
    raise AssertionError("batch row matches no record")


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_fields_match_the_records(records_dir):
    blobs = _blobs()
    (batch,) = _take(_pipeline(records_dir), 1)
    assert batch["points"].shape == (4, 48, 3) and batch["points"].dtype == np.float32
    assert batch["views"].shape == (4, 2, SIZE, SIZE, 3) and batch["views"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int64
    assert batch["view_indices"].shape == (4, 2) and batch["view_indices"].dtype == np.int32
    np.testing.assert_array_equal(batch["index"], np.arange(4))
    for row in range(4):
        number = _object_number(batch["points"][row], blobs)
        stored = records.decode(blobs[number], views=batch["view_indices"][row])
        np.testing.assert_array_equal(batch["points"][row], stored["points"][:48])
        np.testing.assert_array_equal(batch["views"][row], stored["views"])
        assert batch["label"][row] == stored["label"]
        assert len(set(batch["view_indices"][row].tolist())) == 2  # without replacement


def test_points_resampled_and_views_resized_deterministically(records_dir):
    blobs = _blobs()
    (batch,) = _take(
        _pipeline(records_dir, num_points=80, image_size=16, view_selection="fixed"), 1
    )
    np.testing.assert_array_equal(batch["view_indices"], np.tile([0, 1], (4, 1)))
    number = _object_number(batch["points"][0], blobs)
    stored = records.decode(blobs[number])
    np.testing.assert_array_equal(
        batch["points"][0], stored["points"][np.arange(80) % STORED_POINTS]
    )
    expected = np.asarray(
        Image.fromarray(stored["views"][1]).resize((16, 16), Image.Resampling.BILINEAR)
    )
    np.testing.assert_array_equal(batch["views"][0, 1], expected)
    assert pipeline.resize_views(np.zeros((0, 0, 0, 3), np.uint8), (16, 16)).shape == (0, 16, 16, 3)


def test_epochs_cover_each_record_once_and_reshuffle(records_dir):
    blobs = _blobs()
    pipe = _pipeline(records_dir)
    assert pipe.num_records == NUM_RECORDS and pipe.steps_per_epoch == 2
    batches = _take(pipe, 4)
    epochs = [
        [_object_number(p, blobs) for b in batches[e * 2 : e * 2 + 2] for p in b["points"]]
        for e in range(2)
    ]
    for order in epochs:
        assert len(set(order)) == 8  # no repeats inside an epoch; the remainder of 2 is dropped
    assert epochs[0] != epochs[1]  # a new order every epoch
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(16))


def test_same_seed_same_batches_for_any_worker_count(records_dir):
    in_process = _take(_pipeline(records_dir), 5)  # crosses an epoch boundary
    _assert_batches_equal(in_process, _take(_pipeline(records_dir), 5))
    _assert_batches_equal(in_process, _take(_pipeline(records_dir, num_workers=2), 5))
    other_seed = _take(_pipeline(records_dir, seed=1), 1)[0]
    assert not np.array_equal(other_seed["points"], in_process[0]["points"])


def test_process_shares_are_disjoint_and_rebuild_the_global_batch(records_dir):
    blobs = _blobs()
    steps = 2  # one epoch
    single = _take(_pipeline(records_dir), steps)
    shares = [
        _take(_pipeline(records_dir, process_index=p, process_count=2), steps) for p in range(2)
    ]
    for step in range(steps):
        assert shares[0][step]["points"].shape[0] == 2
        joined = {k: np.concatenate([s[step][k] for s in shares]) for k in single[step]}
        _assert_batches_equal([joined], [single[step]])
    seen = [{_object_number(p, blobs) for b in share for p in b["points"]} for share in shares]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 8


def test_state_restores_mid_epoch(records_dir):
    uninterrupted = _take(_pipeline(records_dir), 5)
    first = _pipeline(records_dir)
    with first:
        head = [next(first) for _ in range(3)]
        state = json.loads(json.dumps(first.get_state()))
    assert state["next_step"] == 3
    resumed = _pipeline(records_dir, process_index=1, process_count=2)  # another host layout
    resumed.set_state(state)
    tail = _take(resumed, 2)
    for step, share in zip((3, 4), tail, strict=True):
        np.testing.assert_array_equal(share["index"], uninterrupted[step]["index"][2:])
        np.testing.assert_array_equal(share["points"], uninterrupted[step]["points"][2:])
    _assert_batches_equal(head, uninterrupted[:3])
    with pytest.raises(ValueError, match="seed"):
        _pipeline(records_dir, seed=5).set_state(state)


def test_truncated_shard_is_named(tmp_path):
    write_split(tmp_path, "train", _shards(_blobs(6), 2))
    shard = tmp_path / records.shard_name("train", 1, 2)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        records.RecordError, match=f"{shard.name}.*(cannot be read|manifest says 3)"
    ):
        _pipeline(tmp_path, global_batch_size=2)
    with pytest.raises(FileNotFoundError, match="manifest"):
        _pipeline(tmp_path / "nowhere", global_batch_size=2)


def test_bad_record_raises_or_is_skipped_and_counted(tmp_path):
    blobs = _blobs(8)
    good = records.decode(blobs[5], views=None)["points"]
    blobs[5] = blobs[5][:100]  # truncated record: shard 1, record 1
    write_split(tmp_path, "train", _shards(blobs, 2))
    with pytest.raises(records.RecordError, match=r"train-00001-of-00002.array_record record 1"):
        _take(_pipeline(tmp_path), 2)

    pipe = _pipeline(tmp_path, skip_bad_records=True)
    batches = _take(pipe, 4)  # two epochs, each containing the bad record once
    assert pipe.skipped_records == 2
    for batch in batches:
        assert not any(np.array_equal(p, good[:48]) for p in batch["points"])
        assert batch["points"].shape == (4, 48, 3)


def test_too_few_views_is_a_named_error(records_dir):
    with pytest.raises(records.RecordError, match="has 4 views, 5 are asked"):
        _take(_pipeline(records_dir, num_views=5), 1)


def test_eval_batches_count_each_object_once():
    arrays = {"points": np.arange(10 * 2).reshape(10, 2).astype(np.float32), "label": np.arange(10)}
    batches = list(pipeline.eval_batches(arrays, 4))
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    assert all(b["points"].shape == (4, 2) for b in batches)
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(10))
    np.testing.assert_array_equal(batches[-1]["label"][~batches[-1]["mask"]], [9, 9])

    shares = [
        list(pipeline.eval_batches(arrays, 2, process_index=p, process_count=2)) for p in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == 3  # every process runs the same number of steps
    counted = [b["label"][b["mask"]] for share in shares for b in share]
    np.testing.assert_array_equal(np.sort(np.concatenate(counted)), np.arange(10))


def test_load_labelled_points_from_points_only_and_full_records(tmp_path):
    full = _blobs(5)
    points_only = [synthetic_record(i, STORED_POINTS, 0, SIZE) for i in range(5)]
    write_split(tmp_path, "train", _shards(full, 2), ["c0", "c1", "c2"])
    write_split(tmp_path, "test", _shards(points_only, 2), ["c0", "c1", "c2"])
    for split in ("train", "test"):
        points, labels, names = pipeline.load_labelled_points(tmp_path, split, 32)
        assert points.shape == (5, 32, 3) and points.dtype == np.float32
        np.testing.assert_array_equal(labels, np.arange(5) % 3)
        assert names == ["c0", "c1", "c2"]
        np.testing.assert_array_equal(points[4], records.decode(full[4], views=None)["points"][:32])

    points_only[2] = b"not a record"
    write_split(tmp_path, "bad", [points_only])
    with pytest.raises(records.RecordError, match="bad-00000-of-00001.array_record record 2"):
        pipeline.load_labelled_points(tmp_path, "bad", 32)
    points, labels, _ = pipeline.load_labelled_points(tmp_path, "bad", 32, skip_bad_records=True)
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])
