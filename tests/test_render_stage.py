"""The render stage as a job (mmpoint_jax/data/render_stage.py): outputs, determinism across
worker counts, resume after a kill, bad input, and the launch script."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmpoint_jax import config_lib
from mmpoint_jax.data import meshes, records, render, render_stage, synthetic

TINY = {"views": 2, "image_size": 32, "points": 64, "objects_per_shard": 5}


def _config(input_dir, output_dir, **overrides):
    values = {"input": str(input_dir), "output": str(output_dir), "workers": 0, **TINY, **overrides}
    return config_lib.load_config("configs/render.py", values)


def _shard_bytes(output_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in records.list_shards(output_dir)}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root, synthetic.generate_dataset(root, num_per_class=1, seed=0)


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory):
    output = tmp_path_factory.mktemp("reference")
    summary = render_stage.run(_config(shapes[0], output, preview=2))
    return output, summary


def test_manifest_and_records_describe_every_object(shapes, reference):
    root, written = shapes
    output, summary = reference
    manifest = render_stage.read_manifest(output)
    assert summary["written"] == len(written) and summary["skipped"] == 0
    assert manifest["record_schema"] == {"schema": records.SCHEMA, "version": records.VERSION}
    assert manifest["class_names"] == list(synthetic.CATEGORIES)
    assert manifest["class_folders"] == [synthetic.synset_of(c) for c in synthetic.CATEGORIES]
    assert (manifest["views"], manifest["image_size"], manifest["points"]) == (2, 32, 64)
    assert manifest["config"]["views"] == 2 and manifest["input_format"] == "shapenet"
    train = manifest["splits"]["train"]
    assert train["num_objects"] == 12 and set(train["per_class_counts"].values()) == {1}
    assert [s["file"] for s in train["shards"]] == [
        records.shard_name("train", i, 3) for i in range(3)
    ]

    labels = {
        f"{p.parent.parent.parent.name}/{p.parent.parent.name}": label for p, label in written
    }
    preset = render.PRESETS["r2n2"]
    for shard in train["shards"]:
        decoded = [records.decode(r) for r in records.read_shard(output / shard["file"])]
        assert [r["object_id"] for r in decoded] == shard["object_ids"]
        assert shard["num_records"] == len(decoded)
        for record in decoded:
            object_id = record["object_id"]
            assert record["label"] == labels[object_id]
            assert record["class_name"] == synthetic.CATEGORIES[record["label"]]
            assert record["views"].shape == (2, 32, 32, 3) and record["intrinsics"].shape == (
                2,
                3,
                3,
            )
            # Points and cameras are a function of (seed, object id) alone.
            mesh = meshes.prepare_mesh(root / record["meta"]["source"])
            rng = render_stage.object_rng(0, object_id, "points")
            np.testing.assert_array_equal(record["points"], meshes.sample_surface(mesh, 64, rng)[0])
            cameras = render.sample_cameras(
                preset, 2, 32, render_stage.object_rng(0, object_id, "cameras")
            )
            np.testing.assert_array_equal(record["extrinsics"], cameras[1])
            assert np.linalg.norm(record["points"], axis=1).max() <= 1.0 + 1e-6
    assert (output / render_stage.PREVIEW_FILE).exists()


def test_shards_are_identical_for_one_and_two_workers(shapes, reference, tmp_path):
    expected = _shard_bytes(reference[0])
    for workers in (1, 2):
        summary = render_stage.run(_config(shapes[0], tmp_path / f"w{workers}", workers=workers))
        assert summary["written"] == 12
        assert _shard_bytes(tmp_path / f"w{workers}") == expected
    one = render_stage.read_manifest(tmp_path / "w1")
    two = render_stage.read_manifest(tmp_path / "w2")
    assert one["splits"] == two["splits"] and one["fingerprint"] == two["fingerprint"]


def test_rerun_repairs_every_kind_of_interrupted_output(shapes, reference, tmp_path):
    expected = _shard_bytes(reference[0])
    output = tmp_path / "out"
    render_stage.run(_config(shapes[0], output))
    first, second, third = sorted(expected)
    # Killed between the rename and the state file; mid-write (a temporary left over); before
    # a shard started; and a torn shard whose state was lost.
    (output / render_stage.STATE_DIR / f"{first}.json").unlink()
    (output / f".{second}.123.tmp").write_bytes(b"partial")
    (output / second).unlink()
    (output / render_stage.STATE_DIR / f"{second}.json").unlink()
    (output / third).write_bytes(expected[third][:100])  # torn after it was finished
    summary = render_stage.run(_config(shapes[0], output))
    assert summary["shards_written"] == 3 and summary["shards_reused"] == 0
    assert _shard_bytes(output) == expected
    assert not list(output.glob(".*.tmp"))
    again = render_stage.run(_config(shapes[0], output))
    assert again["shards_written"] == 0 and again["shards_reused"] == 3


def test_killed_run_resumes_to_the_uninterrupted_result(shapes, tmp_path, repo_root):
    # One object per shard and larger views: the child is still busy when the test kills it.
    slower = {"image_size": 96, "views": 4, "objects_per_shard": 1}
    render_stage.run(_config(shapes[0], tmp_path / "whole", **slower))
    flags = [f"--config.{k}={v}" for k, v in {**TINY, **slower, "workers": 0}.items()]
    command = [
        sys.executable,
        str(repo_root / "launch/render.py"),
        "--config=configs/render.py",
        f"--config.input={shapes[0]}",
        f"--config.output={tmp_path / 'killed'}",
        *flags,
    ]
    env = {**os.environ, "MMPOINT_NO_PROGRESS": "1"}
    process = subprocess.Popen(
        command, cwd=repo_root, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    state_dir = tmp_path / "killed" / render_stage.STATE_DIR
    deadline = time.time() + 60
    while (
        time.time() < deadline
        and process.poll() is None
        and len(list(state_dir.glob("*.array_record.json"))) < 1
    ):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(list(state_dir.glob("*.array_record.json")))
    assert 1 <= finished_before_kill < 12
    summary = render_stage.run(_config(shapes[0], tmp_path / "killed", **slower))
    assert summary["shards_reused"] >= 1
    assert _shard_bytes(tmp_path / "killed") == _shard_bytes(tmp_path / "whole")
    assert (
        render_stage.read_manifest(tmp_path / "killed")["splits"]
        == render_stage.read_manifest(tmp_path / "whole")["splits"]
    )


def _write_cube_off(path: Path, fused_header: bool = False) -> None:
    vertices = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]  # fmt: skip
    header = "OFF8 12 0\n" if fused_header else "OFF\n8 12 0\n"
    body = "".join(f"{x} {y} {z}\n" for x, y, z in vertices) + "".join(
        f"3 {a} {b} {c}\n" for a, b, c in faces
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)


def test_bad_meshes_are_skipped_and_listed(tmp_path):
    root = tmp_path / "meshes"
    meshes.write_obj(root / "cat_a" / "good.obj", synthetic.make_shape("mug", 0, 0))
    _write_cube_off(root / "cat_b" / "cube.off")
    (root / "cat_a" / "empty.off").write_text("")
    (root / "cat_b" / "nan.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\nnan 1 0\n3 0 1 2\n")
    (root / "cat_b" / "flat.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    _write_cube_off(root / "loose.off")
    summary = render_stage.run(_config(root, tmp_path / "out", views=0))
    assert summary["written"] == 3 and summary["skipped"] == 3
    assert summary["skipped_by_reason"] == {"degenerate": 1, "non-finite": 1, "unreadable": 1}
    manifest = render_stage.read_manifest(tmp_path / "out")
    assert manifest["input_format"] == "meshes" and manifest["class_names"] == ["cat_a", "cat_b"]
    skipped = {s["object_id"]: s for s in manifest["skipped"]}
    assert set(skipped) == {"cat_a/empty.off", "cat_b/nan.off", "cat_b/flat.off"}
    assert (
        skipped["cat_b/flat.off"]["source"] == "cat_b/flat.off"
        and "zero area" in skipped["cat_b/flat.off"]["reason"]
    )
    decoded = {
        r["object_id"]: r
        for s in records.list_shards(tmp_path / "out")
        for r in map(records.decode, records.read_shard(s))
    }
    assert {k: v["label"] for k, v in decoded.items()} == {
        "cat_a/good.obj": 0,
        "cat_b/cube.off": 1,
        "loose.off": -1,
    }
    assert all(r["num_views"] == 0 for r in decoded.values())
    assert manifest["image_size"] == 0 and manifest["views"] == 0


def test_modelnet_keeps_its_split_and_shapenet_reads_all_csv(tmp_path):
    modelnet = tmp_path / "ModelNet"
    for name, split in [("chair_0001", "train"), ("chair_0002", "train"), ("chair_0900", "test")]:
        _write_cube_off(modelnet / "chair" / split / f"{name}.off", fused_header=True)
    _write_cube_off(modelnet / "desk" / "test" / "desk_0001.off")
    render_stage.run(_config(modelnet, tmp_path / "mn", views=0))
    manifest = render_stage.read_manifest(tmp_path / "mn")
    assert manifest["input_format"] == "modelnet"
    assert {k: v["num_objects"] for k, v in manifest["splits"].items()} == {"train": 2, "test": 2}
    assert manifest["splits"]["test"]["per_class_counts"] == {"chair": 1, "desk": 1}

    shapenet = tmp_path / "shapenet"
    synthetic.generate_dataset(shapenet, 2, seed=1, split="train", categories=["car", "lamp"])
    held_out = synthetic.generate_dataset(
        shapenet, 1, seed=2, split="test", categories=["car", "lamp"]
    )
    render_stage.run(_config(shapenet, tmp_path / "sn", views=0))
    splits = render_stage.read_manifest(tmp_path / "sn")["splits"]
    assert splits["test"]["num_objects"] == 2 and splits["train"]["num_objects"] == 4
    test_ids = {i for s in splits["test"]["shards"] for i in s["object_ids"]}
    assert test_ids == {f"{p.parents[2].name}/{p.parents[1].name}" for p, _ in held_out}


def test_split_fraction_holds_out_a_stable_share(tmp_path):
    root = tmp_path / "meshes"
    for i in range(40):
        _write_cube_off(root / "boxes" / f"box_{i:02d}.off")
    config = _config(
        root, tmp_path / "out", views=0, points=8, split_fraction=0.25, objects_per_shard=100
    )
    _, objects, *_ = render_stage.discover(config)
    held_out = {o.object_id for o in objects if o.split == "test"}
    assert 4 <= len(held_out) <= 18
    _, again, *_ = render_stage.discover(config)
    assert {o.object_id for o in again if o.split == "test"} == held_out


def test_bad_paths_and_foreign_outputs_fail_before_any_work(shapes, tmp_path):
    with pytest.raises(render_stage.RenderError, match="input folder not found: .*nowhere"):
        render_stage.run(_config(tmp_path / "nowhere", tmp_path / "out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(render_stage.RenderError, match="not writable: .*a_file"):
        render_stage.run(_config(shapes[0], blocker / "out"))
    with pytest.raises(config_lib.ConfigError, match="camera_preset"):
        render_stage.run(_config(shapes[0], tmp_path / "out", camera_preset="orbit"))

    output = tmp_path / "out"
    render_stage.run(_config(shapes[0], output, views=0, max_objects=3))
    with pytest.raises(render_stage.RenderError, match="another config"):
        render_stage.run(_config(shapes[0], output, views=0, max_objects=3, points=32))
    summary = render_stage.run(
        _config(shapes[0], output, views=0, max_objects=3, points=32, overwrite=True)
    )
    assert summary["written"] == 3 and render_stage.read_manifest(output)["points"] == 32


def test_a_worker_crash_skips_only_the_object_that_caused_it(shapes, tmp_path, monkeypatch):
    _, objects, *_ = render_stage.discover(_config(shapes[0], tmp_path / "out"))
    crasher = objects[4].object_id
    monkeypatch.setenv(render_stage.CRASH_ON_ENV, crasher)
    summary = render_stage.run(_config(shapes[0], tmp_path / "out", workers=1, views=1))
    assert summary["written"] == 11 and summary["skipped_by_reason"] == {"crash": 1}
    assert render_stage.read_manifest(tmp_path / "out")["skipped"][0]["object_id"] == crasher
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_launch_script_reports_a_missing_input_by_name(tmp_path, repo_root):
    result = subprocess.run(
        [sys.executable, "launch/render.py", "--config=configs/render.py",
         f"--config.input={tmp_path / 'missing'}", f"--config.output={tmp_path / 'out'}"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"input folder not found: {tmp_path / 'missing'}" in result.stderr


def test_config_file_accepts_its_args():
    for arg in (None, "runlocal", "views=0", "preset=sphere,views=6"):
        config = config_lib.load_config(f"configs/render.py{':' + arg if arg else ''}")
        assert config.views >= 0
    assert config_lib.load_config("configs/render.py:views=0").views == 0
    assert config_lib.load_config("configs/render.py:runlocal").image_size == 64
    with pytest.raises(config_lib.ConfigError, match="unknown config arg"):
        config_lib.load_config("configs/render.py:vews=3")
    manifest_config = json.loads(json.dumps(config_lib.load_config("configs/render.py").to_dict()))
    assert manifest_config["camera_preset"] == "r2n2"


def test_the_stage_imports_without_open3d(repo_root):
    # Grain workers and the training path import mmpoint_jax.data; open3d must stay lazy.
    code = (
        "import sys; import mmpoint_jax.data.render_stage, mmpoint_jax.data.synthetic; "
        "sys.exit(int('open3d' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root, timeout=60).returncode == 0
