"""A scaled-down `make demo` end to end: every report file exists and holds the expected fields."""

import json

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

    # a second run reuses the rendered shards and the finished pretraining runs
    again = run_demo(config, str(tmp_path), seeds=1)
    assert again["data"]["pool"]["shards_reused"] >= 1 and again["accuracy"] == content["accuracy"]
