import json

import pytest

from mmpoint_jax.data import procedural


def test_records_are_made_once_and_reused(tmp_path):
    records = tmp_path / "rec"
    kwargs = dict(
        splits={"train": (1, 1), "test": (1, 2)}, views=2, image_size=24, points=64, workers=0
    )
    first = procedural.ensure_records(records, **kwargs)
    assert first["splits"] == {"train": 12, "test": 12} and first["shards_written"] == 2
    manifest = json.loads((records / "manifest.json").read_text())
    train_ids = {i for s in manifest["splits"]["train"]["shards"] for i in s["object_ids"]}
    test_ids = {i for s in manifest["splits"]["test"]["shards"] for i in s["object_ids"]}
    assert not train_ids & test_ids  # different generator seeds: different objects
    second = procedural.ensure_records(records, **kwargs)
    assert second["shards_written"] == 0 and second["shards_reused"] == 2
    with pytest.raises(FileExistsError, match="other parameters"):
        procedural.ensure_records(records, **{**kwargs, "splits": {"train": (2, 1)}})
