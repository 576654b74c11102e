"""Fine-tuning: classification, part seg and sem seg each train a few steps on tiny data written in
the real layouts (the loss goes down, eval.json holds the protocol's metrics); a preempted run
resumes to the uninterrupted run's exact state; init_from loads the encoder subtree. The pieces
(loss, augmentation, training stream, encoder merge) against plain versions."""

import functools
import json
import os
import signal

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict

from mmpoint_jax import config_lib, run_log
from mmpoint_jax.data import pipeline_testing, records
from mmpoint_jax.models import build_point_encoder, default_point_encoder_config
from mmpoint_jax.train import checkpointing, finetune, finetune_data

CONFIGS = {
    "classification": "configs/finetune_cls.py:runlocal",
    "partseg": "configs/finetune_partseg.py:runlocal",
    "semseg": "configs/finetune_semseg.py:runlocal",
}
NUM_POINTS = 64  # runlocal's data.num_points


# --------------------------------------------------------------------------- tiny datasets


def _shape(rng, label):
    """A learnable class: sphere, cube surface, thin rod or flat disc, randomly sized."""
    u = rng.normal(size=(NUM_POINTS, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    shapes = (
        u,
        u / np.abs(u).max(axis=1, keepdims=True),
        np.stack([0.1 * u[:, 0], rng.uniform(-1, 1, NUM_POINTS), 0.1 * u[:, 2]], axis=1),
        np.stack([u[:, 0], 0.05 * u[:, 1], u[:, 2]], axis=1),
    )
    return (shapes[label] * rng.uniform(0.7, 1.0)).astype(np.float32)


def write_classification_records(root, num_train=32, num_test=12, num_classes=4):
    for split, count, seed in (("train", num_train, 0), ("test", num_test, 1)):
        blobs = []
        for i in range(count):
            label = i % num_classes
            blobs.append(
                records.encode(
                    object_id=f"{split}{i}",
                    points=_shape(np.random.default_rng([seed, i]), label),
                    views=np.zeros((0, 8, 8, 3), np.uint8),
                    label=label,
                    class_name=f"shape{label}",
                )
            )
        pipeline_testing.write_split(
            root, split, [blobs], [f"shape{c}" for c in range(num_classes)]
        )


def write_shapenetpart_h5(root):
    """Airplanes (parts 0-3 by x) and laptops (parts 28-29 by the sign of y)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train0", 24, 0), ("val0", 8, 1), ("test0", 12, 2)):
        rng = np.random.default_rng(seed)
        points = rng.uniform(-1, 1, size=(count, NUM_POINTS, 3)).astype(np.float32)
        category = np.where(np.arange(count) % 2 == 0, 0, 9)
        airplane_part = np.clip(((points[..., 0] + 1) * 2).astype(int), 0, 3)
        pid = np.where(category[:, None] == 0, airplane_part, 28 + (points[..., 1] > 0))
        with h5py.File(root / f"ply_data_{name}.h5", "w") as f:
            f["data"] = points
            f["label"] = category[:, None].astype(np.uint8)
            f["pid"] = pid.astype(np.uint8)


def write_s3dis_h5(root, blocks_per_area=6):
    """Blocks of every area; class (ceiling, floor, wall) by height, colours random."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rooms, blocks, labels = [], [], []
    for area in range(1, 7):
        for i in range(blocks_per_area):
            xyz = rng.uniform(0, 1, size=(NUM_POINTS, 3))
            rgb = rng.uniform(0, 1, size=(NUM_POINTS, 3))
            blocks.append(np.concatenate([xyz - [0.5, 0.5, 0.0], rgb, xyz], axis=1))
            labels.append(np.clip((xyz[:, 2] * 3).astype(int), 0, 2))
            rooms.append(f"Area_{area}_office_{i // 3}")
    with h5py.File(root / "ply_data_all_0.h5", "w") as f:
        f["data"] = np.stack(blocks).astype(np.float32)
        f["label"] = np.stack(labels).astype(np.uint8)
    (root / "room_filelist.txt").write_text("\n".join(rooms) + "\n")


def _config(repo_root, task, root, **overrides):
    config = config_lib.load_config(str(repo_root / CONFIGS[task]))
    config.data.root = str(root)
    for key, value in overrides.items():
        config_lib.set_field(config, key, value)
    return config


def _train_losses(workdir):
    return [row["train/loss"] for row in run_log.read_metrics(workdir) if "train/loss" in row]


def _assert_loss_went_down(workdir):
    losses = _train_losses(workdir)
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, losses


def _eval_file(workdir):
    return json.loads((workdir / finetune.EVAL_FILE).read_text())


def _final_state(workdir):
    step_dir = checkpointing.latest_step_dir(workdir)
    return int(step_dir.name), checkpointing.restore_subtree(step_dir / "state")


# ------------------------------------------------------------------------ classification


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls_records")
    write_classification_records(root)
    return root


@pytest.fixture(scope="module")
def cls_reference(repo_root, cls_data, tmp_path_factory):
    """8 uninterrupted steps on the 8 fake devices; eval at steps 4 and 8."""
    workdir = tmp_path_factory.mktemp("cls_reference")
    summary = finetune.train_and_evaluate(
        _config(repo_root, "classification", cls_data), str(workdir)
    )
    return workdir, summary


def test_classification_trains_evaluates_and_tracks_the_best(cls_reference, eight_devices):
    workdir, summary = cls_reference
    assert summary["final_step"] == 8 and summary["stopped"] == "completed"
    assert summary["compilations"] == 1
    _assert_loss_went_down(workdir)
    evals = [row for row in run_log.read_metrics(workdir) if "eval/accuracy" in row]
    assert [row["step"] for row in evals] == [4, 8]
    best = max(evals, key=lambda row: row["eval/accuracy"])
    result = _eval_file(workdir)
    assert result["step"] == 8 and result["headline"] == "accuracy"
    assert result["accuracy"] == evals[-1]["eval/accuracy"]
    assert 0.0 <= result["mean_class_accuracy"] <= 1.0
    assert result["best"]["accuracy"] == best["eval/accuracy"] == evals[-1]["eval/best_accuracy"]
    assert set(result["details"]["per_class_accuracy"]) == {f"shape{c}" for c in range(4)}
    assert json.loads((workdir / "config.json").read_text())["task"] == "classification"


def test_preempted_classification_resumes_to_the_same_state(
    repo_root, cls_data, cls_reference, tmp_path, monkeypatch
):
    """SIGTERM after step 3: the run saves step 3 and stops; the same call resumes to step 8."""
    write = run_log.MetricsWriter.write

    def write_then_signal(self, step, metrics):
        row = write(self, step, metrics)
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # caught by the loop's preemption handler
        return row

    config = _config(repo_root, "classification", cls_data)
    with monkeypatch.context() as patch:
        patch.setattr(run_log.MetricsWriter, "write", write_then_signal)
        stopped = finetune.train_and_evaluate(config, str(tmp_path))
    assert stopped["stopped"] == "preempted" and stopped["final_step"] == 3
    resumed = finetune.train_and_evaluate(config, str(tmp_path))
    assert resumed["start_step"] == 3 and resumed["final_step"] == 8
    step, state = _final_state(tmp_path)
    ref_step, ref_state = _final_state(cls_reference[0])
    assert step == ref_step == 8
    leaves, ref_leaves = jax.tree.leaves_with_path(state), jax.tree.leaves_with_path(ref_state)
    assert [path for path, _ in leaves] == [path for path, _ in ref_leaves]
    for (path, value), (_, ref_value) in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_array_equal(value, ref_value, err_msg=jax.tree_util.keystr(path))
    assert _eval_file(tmp_path)["best"] == _eval_file(cls_reference[0])["best"]


# ------------------------------------------------------------------------- segmentation


def test_part_segmentation_trains_and_reports_both_argmaxes(repo_root, tmp_path):
    write_shapenetpart_h5(tmp_path / "data")
    config = _config(repo_root, "partseg", tmp_path / "data", **{"mesh.num_devices": 1})
    summary = finetune.train_and_evaluate(config, str(tmp_path / "run"))
    _assert_loss_went_down(tmp_path / "run")
    result = _eval_file(tmp_path / "run")
    assert result["headline"] == "instance_miou" and result["details"]["argmax"] == "all"
    assert result["details"]["num_shapes"] == 12
    assert set(result["details"]["per_category_miou"]) == {"airplane", "laptop"}
    for key in ("instance_miou", "class_miou", "category_argmax/instance_miou"):
        assert 0.0 < result[key] <= 1.0, key
    assert summary["eval"]["instance_miou"] == result["instance_miou"]


@pytest.fixture(scope="module")
def pretrained_export(tmp_path_factory):
    """A 3-channel DGCNN export with random variables and emb_dims 24 (the config says 32)."""
    encoder_config = default_point_encoder_config(k=4, emb_dims=24, widths=(8, 8, 16, 16))
    variables = _random_like(build_point_encoder(encoder_config), jnp.zeros((2, NUM_POINTS, 3)))
    path = tmp_path_factory.mktemp("export") / "encoder"
    checkpointing.save_encoder(path, variables, encoder_config, source="test")
    return path, variables


def _random_like(model, *args, **kwargs):
    shapes = jax.eval_shape(
        functools.partial(model.init, train=False, **kwargs), jax.random.key(0), *args
    )
    rng = np.random.default_rng(7)
    return jax.tree.map(lambda s: rng.uniform(0.5, 1.0, s.shape).astype(np.float32), shapes)


def test_semantic_segmentation_from_a_pretrained_encoder(repo_root, tmp_path, pretrained_export):
    path, _ = pretrained_export
    write_s3dis_h5(tmp_path / "data")
    config = _config(
        repo_root,
        "semseg",
        tmp_path / "data",
        **{"mesh.num_devices": 1, "init_from": str(path)},
    )
    summary = finetune.train_and_evaluate(config, str(tmp_path / "run"))
    _assert_loss_went_down(tmp_path / "run")
    result = _eval_file(tmp_path / "run")
    assert result["details"]["num_points"] == 6 * NUM_POINTS  # Area 5's blocks, every point once
    assert np.sum(result["details"]["confusion"]) == 6 * NUM_POINTS
    for key in ("overall_accuracy", "mean_class_accuracy", "miou"):
        assert 0.0 <= result[key] <= 1.0, key
    report = json.loads((tmp_path / "run" / finetune.INIT_FILE).read_text())
    assert report == summary["init"]
    assert report["shape_mismatch"] == {
        "params/point_encoder/edgeconv1/kernel": {"checkpoint": [6, 8], "model": [18, 8]}
    }
    assert "params/point_encoder/conv5/kernel" in report["loaded"]
    assert "batch_stats/point_encoder/edgeconv2/bn/var" in report["loaded"]
    assert report["fresh_layers"] == ["head", "point_encoder/edgeconv1"]
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["model"]["point_encoder"]["emb_dims"] == 24  # adopted from the export


# ------------------------------------------------------------------------------- pieces


def test_load_encoder_variables_copies_every_fitting_layer(pretrained_export, repo_root, tmp_path):
    """Into the 9-channel sem-seg net, from the export on disk: all but the first EdgeConv, with
    the values saved; everything else as it was."""
    path, encoder = pretrained_export
    restored = checkpointing.restore_encoder(path)
    config = _config(repo_root, "semseg", tmp_path, **{"model.point_encoder.emb_dims": 24})
    data = finetune_data.TaskData(
        {"points": np.zeros((2, NUM_POINTS, 9), np.float32)}, {}, tuple("abc")
    )
    model = finetune.build_model(config, data)
    fresh = jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype),
        jax.eval_shape(
            functools.partial(model.init, train=False),
            jax.random.key(0),
            jnp.zeros((2, NUM_POINTS, 9)),
        ),
    )
    merged, report = finetune.load_encoder_variables(fresh, restored.variables)
    for collection in ("params", "batch_stats"):
        ours = flatten_dict(merged[collection]["point_encoder"], sep="/")
        theirs = flatten_dict(encoder[collection], sep="/")
        for path, value in ours.items():
            if path.startswith("edgeconv1/"):
                assert not value.any(), path  # left as initialised, statistics included
            else:
                np.testing.assert_array_equal(value, theirs[path], err_msg=path)
        for path, value in flatten_dict(merged[collection]["head"], sep="/").items():
            assert not value.any(), path
    checkpoint_leaves = sum(len(flatten_dict(encoder[c])) for c in ("params", "batch_stats"))
    # edgeconv1 stays whole: kernel, BN scale and bias, BN mean and var
    assert len(report["loaded"]) == checkpoint_leaves - 5
    assert report["unused"] == []


def test_adopt_encoder_structure_keeps_runtime_fields(repo_root, tmp_path):
    config = _config(repo_root, "partseg", tmp_path)
    changes = finetune.adopt_encoder_structure(
        config, {"name": "dgcnn", "k": 20, "emb_dims": 1024, "widths": [64, 64, 128, 256]}, "ckpt"
    )
    assert config.model.point_encoder.emb_dims == 1024
    assert tuple(config.model.point_encoder.widths) == (64, 64, 128, 256)
    assert config.model.point_encoder.k == 4  # the fine-tune's own neighbourhood size
    assert len(changes) == 2
    finetune.adopt_encoder_structure(config, {"name": "pointnet", "emb_dims": 512}, "ckpt")
    assert config.model.point_encoder.to_dict() == {
        "name": "pointnet",
        "emb_dims": 512,
        "dtype": "float32",
    }


@pytest.mark.parametrize("label_shape", [(5,), (3, 7)])
def test_smoothed_cross_entropy_is_dgcnn_cal_loss(label_shape):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(*label_shape, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=label_shape)
    eps = 0.2
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full(logits.shape, eps / 5)
    np.put_along_axis(target, labels[..., None], 1 - eps, axis=-1)
    want = -(target * log_probs).sum(-1).mean()
    loss = jax.jit(finetune.smoothed_cross_entropy, static_argnums=2)
    np.testing.assert_allclose(loss(logits, labels, eps), want, rtol=1e-5)
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(loss(logits, labels, 0.0), plain, rtol=1e-5)


def test_augmentation_scales_shifts_xyz_and_shuffles_labels_along():
    cfg = config_lib.load_config("configs/finetune_cls.py").augment
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 16, 5)).astype(np.float32)  # 2 extra channels ride along
    labels = np.tile(np.arange(16), (4, 1))  # label = index of the point
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    augment = jax.jit(functools.partial(finetune.augment_batch, cfg=cfg))
    moved, moved_labels = augment(points, labels, keys)
    moved, moved_labels = np.asarray(moved), np.asarray(moved_labels)
    for b in range(4):
        original = points[b][moved_labels[b]]  # the source point of each output point
        assert sorted(moved_labels[b]) == list(range(16))
        assert not np.array_equal(moved_labels[b], np.arange(16))
        np.testing.assert_array_equal(moved[b][:, 3:], original[:, 3:])
        scale = (moved[b, 1, :3] - moved[b, 0, :3]) / (original[1, :3] - original[0, :3])
        shift = moved[b, 0, :3] - original[0, :3] * scale
        np.testing.assert_allclose(moved[b][:, :3], original[:, :3] * scale + shift, atol=1e-5)
        assert np.all((scale >= 2 / 3 - 1e-6) & (scale <= 1.5 + 1e-6)), scale
        assert np.all(np.abs(shift) <= 0.2 + 1e-6), shift


def test_array_stream_splits_global_batches_over_processes_and_resumes():
    arrays = {"points": np.arange(50, dtype=np.float32)[:, None], "label": np.arange(50)}
    one = finetune_data.ArrayStream(arrays, global_batch_size=8, seed=3)
    parts = [
        finetune_data.ArrayStream(
            arrays, global_batch_size=8, seed=3, process_index=p, process_count=2
        )
        for p in range(2)
    ]
    assert one.steps_per_epoch == 6
    seen = []
    for _ in range(12):  # two epochs
        batch = next(one)
        shares = [next(part) for part in parts]
        for key in ("label", "index"):
            np.testing.assert_array_equal(batch[key], np.concatenate([s[key] for s in shares]))
        seen.append(batch["label"])
    first_epoch = np.concatenate(seen[:6])
    assert len(set(first_epoch)) == 48  # no repeats within an epoch; the last 2 dropped
    state = one.get_state()
    again = finetune_data.ArrayStream(arrays, global_batch_size=8, seed=3)
    again.set_state(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(next(again)["label"], next(one)["label"])
    with pytest.raises(ValueError, match="seed"):
        finetune_data.ArrayStream(arrays, global_batch_size=8, seed=4).set_state(state)


def test_bad_configs_fail_with_the_field_name(repo_root, tmp_path):
    with pytest.raises(config_lib.ConfigError, match="data.root"):
        finetune.train_and_evaluate(_config(repo_root, "partseg", ""), str(tmp_path))
    with pytest.raises(config_lib.ConfigError, match="data.format"):
        finetune.train_and_evaluate(
            _config(repo_root, "semseg", tmp_path, **{"data.format": "modelnet40_h5"}),
            str(tmp_path),
        )
    with pytest.raises(config_lib.ConfigError, match="point_encoder.name"):
        finetune.train_and_evaluate(
            _config(repo_root, "partseg", tmp_path, **{"model.point_encoder.name": "pointnet"}),
            str(tmp_path),
        )
