"""Two JAX processes x 2 CPU devices (gloo collectives, launch/local_multiprocess.sh) train exactly
like one process with 4 devices on the same global batch."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mmpoint_jax import run_log
from mmpoint_jax.data import pipeline_testing
from mmpoint_jax.train import checkpointing

CONFIG = "configs/pretrain_tiny.py:runlocal"
# Two steps at a small SGD rate, as in test_pretrain's 1-vs-8-device test (the reason is there:
# feature-space kNN turns reduction-order noise into separate trajectories after a few steps).
STEPS = 2


def _run(repo_root, command, env_devices, timeout=600):
    env = dict(os.environ, MMPOINT_NO_PROGRESS="1", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={env_devices}" if env_devices else ""
    )
    result = subprocess.run(
        command, cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.multiprocess
def test_two_processes_equal_one_process(repo_root, tmp_path):
    records = tmp_path / "records"
    blobs = [pipeline_testing.synthetic_record(i, 64, 4, 32) for i in range(16)]
    pipeline_testing.write_split(records, "train", [blobs[:8], blobs[8:]], ["a", "b", "c"])
    flags = [
        f"--config={CONFIG}",
        f"--config.data.records={records}",
        f"--config.train.num_steps={STEPS}",
        "--config.optim.name=sgd",  # see test_pretrain: Adam amplifies rounding differences
        "--config.optim.lr=0.001",
    ]
    single = tmp_path / "single"
    _run(
        repo_root,
        [sys.executable, "launch/pretrain.py", f"--workdir={single}", *flags],
        env_devices=4,
    )
    multi = tmp_path / "multi"
    env_logdir = dict(MMPOINT_LOGDIR=str(tmp_path / "logs"))
    os.environ.update(env_logdir)
    try:
        _run(
            repo_root,
            [
                "launch/local_multiprocess.sh",
                "2",
                "--devices_per_process=2",
                "--",
                sys.executable,
                "launch/pretrain.py",
                f"--workdir={multi}",
                *flags,
            ],
            env_devices=None,
        )
    finally:
        os.environ.pop("MMPOINT_LOGDIR")
    log0 = (tmp_path / "logs" / "process_0.log").read_text()
    assert "on 2 process(es)" in log0

    losses = {
        w: {r["step"]: r["loss/total"] for r in run_log.read_metrics(w) if "loss/total" in r}
        for w in (single, multi)
    }
    assert sorted(losses[multi]) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert losses[multi][step] == pytest.approx(losses[single][step], rel=2e-5), step

    final = {
        w: checkpointing.restore_subtree(checkpointing.latest_step_dir(w) / "state")
        for w in (single, multi)
    }
    leaves_single = jax.tree.leaves(final[single]["params"])
    leaves_multi = jax.tree.leaves(final[multi]["params"])
    for a, b in zip(leaves_multi, leaves_single, strict=True):
        # gloo sums in another order; one update moves parameters by ~0.06, a wrong reduction
        # (per-process gradients, a missing average) by as much
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
