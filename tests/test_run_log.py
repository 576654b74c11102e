import json
import os

import ml_collections
import numpy as np

from mmpoint_jax import io_utils, run_log


def test_metrics_lines_carry_step(tmp_path):
    writer = run_log.MetricsWriter(tmp_path)
    writer.write(3, {"train/loss": np.float32(1.5), "lr": 0.1})
    writer.write(4, {"train/loss": float("nan")})
    rows = run_log.read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [3, 4]
    assert rows[0]["train/loss"] == 1.5 and rows[1]["train/loss"] == "nan"
    # a torn last line (killed mid-write) does not break reading
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "tr')
    assert len(run_log.read_metrics(tmp_path)) == 2


def test_write_config_resolved(tmp_path):
    config = ml_collections.ConfigDict(dict(a=1, b=dict(c=(1, 2))))
    path = run_log.write_config(tmp_path, config)
    assert json.loads(path.read_text()) == {"a": 1, "b": {"c": [1, 2]}}


def test_atomic_write_leaves_no_temp(tmp_path):
    io_utils.atomic_write_text(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_progress_counts():
    bar = run_log.progress(total=3, desc="x", disable=False)
    for _ in range(3):
        bar.update(1)
    assert bar.n == 3
    bar.close()
