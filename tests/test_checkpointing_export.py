import numpy as np
import pytest

from mmpoint_jax.train import checkpointing


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "params": {"conv1": {"kernel": rng.normal(size=(6, 64)).astype(np.float32)}},
        "batch_stats": {"bn1": {"mean": rng.normal(size=(64,)).astype(np.float32)}},
    }


def test_export_round_trip(tmp_path):
    variables = _variables()
    checkpointing.save_encoder(
        tmp_path / "enc", variables, {"name": "dgcnn", "k": 20}, source="pytorch:x"
    )
    restored = checkpointing.restore_encoder(tmp_path / "enc")
    assert (
        restored.tower == "point"
        and restored.model.name == "dgcnn"
        and restored.source == "pytorch:x"
    )
    np.testing.assert_array_equal(
        restored.variables["params"]["conv1"]["kernel"], variables["params"]["conv1"]["kernel"]
    )
    np.testing.assert_array_equal(
        restored.variables["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"]
    )
    assert restored.heads is None
    with pytest.raises(checkpointing.CheckpointError, match="exists"):
        checkpointing.save_encoder(tmp_path / "enc", variables, {"name": "dgcnn"})
    with pytest.raises(checkpointing.CheckpointError, match="image was asked for"):
        checkpointing.restore_encoder(tmp_path / "enc", tower="image")


def test_restore_errors_name_path(tmp_path):
    with pytest.raises(checkpointing.CheckpointError, match="not found"):
        checkpointing.restore_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpointing.CheckpointError, match="empty"):
        checkpointing.restore_encoder(tmp_path / "empty")


def test_export_with_heads(tmp_path):
    heads = {"params": {"head0": {"kernel": np.ones((4, 2), np.float32)}}}
    checkpointing.save_encoder(
        tmp_path / "e", _variables(), {"name": "dgcnn"}, heads=heads, heads_config={"dims": [2]}
    )
    restored = checkpointing.restore_encoder(tmp_path / "e")
    assert set(restored.variables) == {"params", "batch_stats"}
    np.testing.assert_array_equal(restored.heads["params"]["head0"]["kernel"], np.ones((4, 2)))
    assert list(restored.heads_model.dims) == [2]
