"""Evaluation runs end to end on procedural shapes: records, ModelNet40-h5 and ScanObjectNN
layouts written here, an encoder export or `checkpoint=none`, through the library and the CLI.
Each SVM number is checked against sklearn's literal `SVC(kernel='linear')` on features
extracted here by hand; the slow test pretrains a tiny checkpoint first."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mmpoint_jax import config_lib, features
from mmpoint_jax.config_lib import ConfigError
from mmpoint_jax.data import meshes, pipeline_testing, records, synthetic
from mmpoint_jax.data.datasets import DatasetFormatError
from mmpoint_jax.evaluate import bn_reestimate, run, splits
from mmpoint_jax.models import default_point_encoder_config
from mmpoint_jax.train import checkpointing

CATEGORIES = ("bottle", "chair", "table")
STORED_POINTS = 80  # more than the 64 evaluated: the first 64 must be the ones used
NUM_POINTS = 64
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 4
TINY_DGCNN = dict(k=4, emb_dims=32, widths=(8, 8, 16, 16))


def _procedural(per_class, seed):
    """points [M, STORED_POINTS, 3] (unit sphere), labels [M] int: CATEGORIES order."""
    points, labels = [], []
    for label, category in enumerate(CATEGORIES):
        for index in range(per_class):
            mesh = meshes.normalise(synthetic.make_shape(category, seed, index))
            cloud, _ = meshes.sample_surface(mesh, STORED_POINTS, np.random.default_rng(index))
            points.append(cloud)
            labels.append(label)
    return np.stack(points).astype(np.float32), np.asarray(labels)


@pytest.fixture(scope="module")
def shapes():
    return {"train": _procedural(TRAIN_PER_CLASS, seed=1), "test": _procedural(TEST_PER_CLASS, 2)}


def _write_records(root, shapes, num_views=0):
    for split, (points, labels) in shapes.items():
        rng = np.random.default_rng(0)
        blobs = [
            records.encode(
                object_id=f"{split}{i:03d}",
                points=cloud,
                views=pipeline_testing.smooth_views(rng, num_views, 32)
                if num_views
                else np.zeros((0, 32, 32, 3), np.uint8),
                label=int(label),
                class_name=CATEGORIES[label],
            )
            for i, (cloud, label) in enumerate(zip(points, labels, strict=True))
        ]
        half = len(blobs) // 2
        pipeline_testing.write_split(root, split, [blobs[:half], blobs[half:]], CATEGORIES)
    return root


def _write_modelnet40(root, shapes):
    """`ply_data_<split><i>.h5` with `data` (B, N, 3) and `label` (B, 1) uint8, two train files."""
    root.mkdir()
    for split, (points, labels) in shapes.items():
        parts = np.array_split(np.arange(len(labels)), 2 if split == "train" else 1)
        for i, rows in enumerate(parts):
            with h5py.File(root / f"ply_data_{split}{i}.h5", "w") as f:
                f.create_dataset("data", data=points[rows], compression="gzip")
                f.create_dataset("label", data=labels[rows, None].astype(np.uint8))
    return root


def _write_scanobjectnn(root, shapes):
    """The release's OBJ_BG files: `main_split/{training,test}_objectdataset.h5`, 1-D labels."""
    (root / "main_split").mkdir(parents=True)
    for split, (points, labels) in shapes.items():
        name = f"{'training' if split == 'train' else 'test'}_objectdataset.h5"
        with h5py.File(root / "main_split" / name, "w") as f:
            f.create_dataset("data", data=points)
            f.create_dataset("label", data=labels.astype(np.int64))
            f.create_dataset("mask", data=np.zeros(points.shape[:2], np.int32))
    return root


def _literal_svm_accuracy_of_features(feats_and_labels, C=0.01):
    """The papers' classifier: sklearn's SVC(kernel='linear') on raw train features."""
    from sklearn.svm import SVC

    (train_feats, train_labels), (test_feats, test_labels) = (
        feats_and_labels["train"],
        feats_and_labels["test"],
    )
    svc = SVC(kernel="linear", C=C).fit(train_feats, train_labels)
    return float(np.mean(svc.predict(test_feats) == test_labels))


def _literal_svm_accuracy(model_cfg, variables, shapes):
    """The papers' protocol by hand: first NUM_POINTS points, eval features, SVC(linear)."""
    return _literal_svm_accuracy_of_features(
        {
            split: (
                features.extract_features(model_cfg, variables, points[:, :NUM_POINTS], 8),
                labels,
            )
            for split, (points, labels) in shapes.items()
        }
    )


def _run_cli(repo_root, workdir, *overrides, config="configs/svm.py:runlocal"):
    command = [
        sys.executable,
        str(repo_root / "launch" / "evaluate.py"),
        f"--config={repo_root / config}",
        f"--workdir={workdir}",
        *overrides,
    ]
    env = {**os.environ, "MMPOINT_NO_JEMALLOC": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ library runs


@pytest.fixture(scope="module")
def export(tmp_path_factory, shapes):
    """A tiny DGCNN encoder export: (path, model config, variables)."""
    cfg = default_point_encoder_config("dgcnn", **TINY_DGCNN)
    variables = bn_reestimate.random_init_encoder(cfg, shapes["train"][0], seed=5, batch_size=8)
    path = tmp_path_factory.mktemp("export") / "export"
    checkpointing.save_encoder(path, variables, cfg, source="test")
    return path, cfg, variables


def test_records_with_an_encoder_export_match_the_literal_svm(tmp_path, shapes, export):
    export, cfg, variables = export
    root = _write_records(tmp_path / "records", shapes)

    results = run.linear_svm_from_checkpoint(
        str(export),
        {"format": "records", "root": str(root), "num_points": NUM_POINTS},
        workdir=str(tmp_path / "out"),
        options={"batch_size": 8},
    )
    assert results["accuracy"] == pytest.approx(_literal_svm_accuracy(cfg, variables, shapes))
    assert results["num_train"] == 3 * TRAIN_PER_CLASS and results["num_test"] == 3 * TEST_PER_CLASS
    assert results["C"] == 0.01 and results["encoder"]["path"] == str(export)
    assert 0.0 <= results["standardised"]["accuracy"] <= 1.0
    assert sorted(results["per_class_accuracy"]) == sorted(CATEGORIES)
    written = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert written["accuracy"] == results["accuracy"]
    assert written["data"]["splits"]["test"]["num_points"] == NUM_POINTS
    assert json.loads((tmp_path / "out" / "config.json").read_text())["checkpoint"] == str(export)
    metrics = (tmp_path / "out" / "metrics.jsonl").read_text()
    assert json.loads(metrics)["eval/svm/accuracy"] == results["accuracy"]
    _check_png(tmp_path / "out" / run.CONFUSION_PNG)

    data = {"format": "records", "root": str(root), "num_points": NUM_POINTS}
    chosen = run.linear_svm_from_checkpoint(
        str(export), data, options={"svm.C_candidates": (0.001, 0.1), "svm.standardised": False}
    )
    assert chosen["C"] in (0.001, 0.1) and len(chosen["C_selection"]) == 2
    assert "standardised" not in chosen
    with pytest.raises(DatasetFormatError, match="no split 'val'"):
        run.linear_svm_from_checkpoint(str(export), {**data, "test_split": "val"})


def test_config_and_path_errors_name_the_field_or_path(tmp_path, repo_root):
    config = config_lib.load_config(str(repo_root / "configs" / "svm.py"))
    with pytest.raises(ConfigError, match="'checkpoint' is empty"):
        run.check_config(config)
    config.checkpoint = str(tmp_path / "no_such_run")
    with pytest.raises(checkpointing.CheckpointError, match="no_such_run"):
        run.check_config(config)
    config.checkpoint = "none"
    with pytest.raises(ConfigError, match="data.root"):
        run.check_config(config)
    config.data.root = str(tmp_path / "no_such_data")
    with pytest.raises(DatasetFormatError, match="no_such_data"):
        run.check_config(config)
    config.data.root = str(tmp_path)
    config.protocol = "svm,knn"
    with pytest.raises(ConfigError, match="'protocol'"):
        run.check_config(config)
    config.protocol = "svm"
    config.data.format = "modelnet40"
    with pytest.raises(ConfigError, match="data.format"):
        run.check_config(config)
    with pytest.raises(ConfigError, match="unknown config field 'data.nmu_points'"):
        run.linear_svm_from_checkpoint("none", {"root": str(tmp_path), "nmu_points": 3})


def test_scanobjectnn_auto_variant_prefers_crosspoint_files(tmp_path, shapes):
    root = _write_scanobjectnn(tmp_path / "sonn", shapes)
    data = {"format": "scanobjectnn_h5", "root": str(root), "num_points": 32}
    assert splits.load_split(data, "train").source_files[0].endswith("training_objectdataset.h5")
    points, labels = shapes["test"]
    with h5py.File(root / "main_split" / "test.h5", "w") as f:  # CrossPoint's renamed copy
        f.create_dataset("data", data=points[:5])
        f.create_dataset("label", data=labels[:5])
    (root / "main_split" / "train.h5").write_bytes(
        (root / "main_split" / "training_objectdataset.h5").read_bytes()
    )
    test = splits.load_split(data, "test")
    assert test.source_files[0].endswith("main_split/test.h5") and len(test) == 5
    np.testing.assert_array_equal(test.points, points[:5, :32])


# ----------------------------------------------------------------------------------- the CLI


def test_cli_modelnet40_random_init_with_tsne(tmp_path, repo_root, shapes):
    root = _write_modelnet40(tmp_path / "modelnet40_ply_hdf5_2048", shapes)
    out = tmp_path / "out"
    result = _run_cli(
        repo_root,
        out,
        "--config.checkpoint=none",
        "--config.data.format=modelnet40_h5",
        f"--config.data.root={root}",
        f"--config.data.num_points={NUM_POINTS}",
        "--config.batch_size=8",
        "--config.seed=7",
        "--config.bn_reestimate_clouds=12",
        "--config.tsne=True",
        "--config.save_features=True",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((out / "eval.json").read_text())
    assert f"accuracy {100 * written['accuracy']:.2f} %" in result.stdout
    assert written["encoder"]["kind"] == "random_init"
    bn_report = written["encoder"]["bn_reestimate"]
    assert bn_report["num_clouds"] == 12 and bn_report["layers"][-1]["layer"] == "bn5"
    assert written["data"]["splits"]["train"]["source_files"][-1].endswith("ply_data_train1.h5")
    # the saved features and labels give the same number with the literal SVC
    saved = {
        s: (np.load(out / f"features_{s}.npy"), np.load(out / f"labels_{s}.npy")) for s in shapes
    }
    np.testing.assert_array_equal(saved["test"][1], shapes["test"][1])
    assert written["accuracy"] == pytest.approx(_literal_svm_accuracy_of_features(saved))
    _check_png(out / run.CONFUSION_PNG)
    _check_png(out / run.TSNE_PNG)
    assert (out / "config.json").exists()


def test_cli_scanobjectnn_fewshot_and_svm(tmp_path, repo_root, shapes, export):
    root = _write_scanobjectnn(tmp_path / "h5_files", shapes)
    out = tmp_path / "out"
    result = _run_cli(
        repo_root,
        out,
        f"--config.checkpoint={export[0]}",
        "--config.batch_size=8",
        "--config.protocol=svm,fewshot",
        "--config.data.format=scanobjectnn_h5",
        f"--config.data.root={root}",
        f"--config.data.num_points={NUM_POINTS}",
        "--config.fewshot.ways=(2,3)",
        "--config.fewshot.shots=(2,)",
        "--config.fewshot.n_query=3",
        config="configs/fewshot.py:runlocal",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((out / "eval.json").read_text())
    assert sorted(written["fewshot"]) == ["2way_2shot", "3way_2shot"]
    for setting in written["fewshot"].values():
        assert len(setting["accuracies"]) == 3  # runlocal: 3 trials
        assert setting["accuracy_mean"] == pytest.approx(np.mean(setting["accuracies"]))
        assert "few-shot " + f"{setting['n_way']}-way 2-shot" in result.stdout
    assert written["data"]["class_names"][0] == "bag"  # ScanObjectNN's names
    expected = _literal_svm_accuracy(export[1], export[2], shapes)
    assert written["accuracy"] == pytest.approx(expected)
    assert f"accuracy {100 * expected:.2f} %" in result.stdout


def test_cli_missing_checkpoint_is_one_line_naming_the_path(tmp_path, repo_root):
    result = _run_cli(
        repo_root,
        tmp_path / "out",
        f"--config.checkpoint={tmp_path / 'missing_run'}",
        f"--config.data.root={tmp_path}",
    )
    assert result.returncode != 0
    assert "error: checkpoint: path not found" in result.stderr and "missing_run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tiny_pretraining_checkpoint_to_svm_through_the_cli(tmp_path, repo_root, shapes):
    from mmpoint_jax.train import pretrain

    root = _write_records(tmp_path / "records", shapes, num_views=4)
    config = config_lib.load_config(str(repo_root / "configs" / "pretrain_tiny.py:runlocal"))
    config.data.records = str(root)
    config_lib.set_field(config, "train.num_steps", 2)
    pretrain.train_and_evaluate(config, str(tmp_path / "pretrain"))

    out = tmp_path / "svm"
    result = _run_cli(
        repo_root,
        out,
        f"--config.checkpoint={tmp_path / 'pretrain'}",
        "--config.data.format=records",
        f"--config.data.root={root}",
        f"--config.data.num_points={NUM_POINTS}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((out / "eval.json").read_text())
    assert written["encoder"]["step"] == 2 and written["encoder"]["source"] == "pretrain"
    restored = checkpointing.restore_encoder(tmp_path / "pretrain")
    expected = _literal_svm_accuracy(restored.model, restored.variables, shapes)
    assert written["accuracy"] == pytest.approx(expected)
    assert f"accuracy {100 * expected:.2f} %" in result.stdout
