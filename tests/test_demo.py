"""A scaled-down `make demo` end to end: every report file exists and holds the expected fields."""

import json

import numpy as np
import pytest

from mmpoint_jax import config_lib
from mmpoint_jax.demo.run import run_demo


def test_scaled_down_demo_writes_the_report(repo_root, tmp_path):
    config = config_lib.load_config(str(repo_root / "configs/demo.py:runlocal"))
    content = run_demo(config, str(tmp_path), seeds=1)

    report = json.loads((tmp_path / "report.json").read_text())
    assert report == json.loads(json.dumps(content, default=str))  # what was returned was written
    for encoder in ("random", "crosspoint", "mmpoint"):
        assert 0.0 <= report["accuracy"][encoder] <= 1.0
        assert len(report["accuracy_per_seed"][encoder]) == 1
    assert report["seeds"] == 1 and report["verdicts"]
    assert report["headline_test_set"] == "posed" and set(report["test_sets"]) == {
        "posed",
        "aligned",
    }
    assert report["test_sets"]["posed"]["accuracy"] == report["accuracy"]
    assert set(report["pictures"]) >= {
        "views",
        "losses",
        "mutual_information",
        "svm_vs_step",
        "tsne",
    }
    for name in report["pictures"].values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text()
    assert "| MM-Point mode |" in markdown and "![tsne](tsne_mmpoint.png)" in markdown
    # the SVM-vs-step curve and the MI bound come from this run's metrics
    rows = [
        json.loads(line)
        for line in (tmp_path / "runs/mmpoint_seed0/metrics.jsonl").read_text().splitlines()
    ]
    assert any("eval/svm/accuracy" in r for r in rows) and any("mi_bound/view1" in r for r in rows)
    evidence = report["evidence"]
    assert evidence["test_objects"] == 12  # 12 categories x test_per_class 1
    assert evidence["mmpoint_minus_crosspoint_per_seed"][0] == pytest.approx(
        report["accuracy"]["mmpoint"] - report["accuracy"]["crosspoint"]
    )
    last_eval = [r["eval/svm/accuracy"] for r in rows if "eval/svm/accuracy" in r][-1]
    assert evidence["svm_during_pretraining"]["mmpoint"]["accuracy"][-1] == pytest.approx(last_eval)
    assert "**Resolution.**" in markdown and "**Did the views carry signal?**" in markdown

    # a second run reuses the rendered shards and the finished pretraining runs
    again = run_demo(config, str(tmp_path), seeds=1)
    assert again["data"]["pool"]["shards_reused"] >= 1 and again["accuracy"] == content["accuracy"]


def _fake_run(directory, rows):
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def test_reading_the_numbers_argues_from_the_run(tmp_path):
    """Standard error, seed-averaged curves and the saturation sentence, on a hand-made run."""
    from mmpoint_jax.demo import report

    runs = {
        ("mmpoint", 0): _fake_run(
            tmp_path / "m0",
            [
                {"step": 10, "eval/svm/accuracy": 0.80, "mi_bound/view1": 0.5},
                {"step": 20, "eval/svm/accuracy": 0.90, "mi_bound/view1": 1.0},
            ],
        ),
        ("mmpoint", 1): _fake_run(
            tmp_path / "m1",
            [
                {"step": 10, "eval/svm/accuracy": 0.70, "mi_bound/view1": 0.7},
                {"step": 20, "eval/svm/accuracy": 0.90, "mi_bound/view1": 2.0},
            ],
        ),
        ("crosspoint", 0): _fake_run(tmp_path / "c0", [{"step": 20, "eval/svm/accuracy": 0.85}]),
    }
    accuracy = {
        "mmpoint": {"mean": 0.9, "per_seed": [0.9, 0.9]},
        "crosspoint": {"mean": 0.85, "per_seed": [0.85, 0.8]},
    }
    evidence = report._evidence(accuracy, runs, num_test=100)
    assert evidence["standard_error"] == pytest.approx(np.sqrt(0.9 * 0.1 / 100))
    assert evidence["mmpoint_minus_crosspoint_per_seed"] == pytest.approx([0.05, 0.1])
    assert evidence["svm_during_pretraining"]["mmpoint"] == {
        "steps": [10, 20],
        "accuracy": pytest.approx([0.75, 0.90]),
    }
    assert evidence["mi_bound_final_nats"] == {"view1": pytest.approx(1.5)}
    content = {
        "evidence": evidence,
        "accuracy": {"mmpoint": 0.9},
        "config": {"pretrain": {"batch_size": 32, "num_steps": 20}, "data": {"image_size": 32}},
    }
    text = "\n".join(report._reading_the_numbers(content))
    assert "one standard error of an accuracy near 90% is 3.0 points" in text
    assert "+5.0, +10.0 points" in text
    # 75% -> 90% is more than the resolution: the probe did not saturate, no such claim
    assert "saturates early" not in text


def test_posing_turns_each_cloud_about_the_up_axis_only():
    from mmpoint_jax.demo.run import pose_about_up_axis

    points = np.random.default_rng(0).normal(size=(5, 32, 3)).astype(np.float32)
    posed = pose_about_up_axis(points, seed=3)
    np.testing.assert_array_equal(posed, pose_about_up_axis(points, seed=3))  # seeded
    np.testing.assert_allclose(posed[..., 1], points[..., 1], atol=1e-6)  # height kept
    np.testing.assert_allclose(
        np.linalg.norm(posed[..., [0, 2]], axis=-1),
        np.linalg.norm(points[..., [0, 2]], axis=-1),
        rtol=1e-5,
    )
    # one rigid turn per cloud: the angle of every point moved by the same amount
    turn = np.angle((posed[..., 0] + 1j * posed[..., 2]) / (points[..., 0] + 1j * points[..., 2]))
    np.testing.assert_allclose(np.exp(1j * (turn - turn[:, :1])), 1.0, atol=1e-4)
    assert len(np.unique(np.round(turn[:, 0], 3))) == 5  # a different angle per cloud
