"""Pretraining loop: device-count invariance, no recompilation, exact resume after SIGTERM and
SIGKILL, the non-finite guard, warm starts. Test-sized network (configs/pretrain_tiny.py:runlocal)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mmpoint_jax import config_lib, run_log
from mmpoint_jax.data import pipeline_testing
from mmpoint_jax.train import checkpointing, pretrain

CONFIG = "configs/pretrain_tiny.py:runlocal"


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    blobs = [pipeline_testing.synthetic_record(i, 64, 4, 32, num_classes=4) for i in range(24)]
    pipeline_testing.write_split(
        directory, "train", [blobs[:12], blobs[12:]], [f"c{i}" for i in range(4)]
    )
    return directory


def _config(repo_root, records_dir, **overrides):
    config = config_lib.load_config(str(repo_root / CONFIG))
    config.data.records = str(records_dir)
    for key, value in overrides.items():
        config_lib.set_field(config, key, value)
    return config


def _losses(workdir):
    return {
        row["step"]: row["loss/total"]
        for row in run_log.read_metrics(workdir)
        if "loss/total" in row
    }


def _final_state(workdir):
    step_dir = checkpointing.latest_step_dir(workdir)
    return int(step_dir.name), checkpointing.restore_subtree(step_dir / "state")


def _assert_trees_equal(a, b):
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference_run(repo_root, records_dir, tmp_path_factory):
    """Uninterrupted 6-step run on one device: the baseline the other tests compare with."""
    workdir = tmp_path_factory.mktemp("reference")
    summary = pretrain.train_and_evaluate(
        _config(repo_root, records_dir, **{"mesh.num_devices": 1}), str(workdir)
    )
    return workdir, summary


def test_reference_run_trains_without_recompiling(reference_run):
    workdir, summary = reference_run
    assert summary["final_step"] == 6 and summary["stopped"] == "completed"
    assert summary["compilations"] == 1  # one trace of the step for the whole run
    losses = _losses(workdir)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(np.isfinite(v) for v in losses.values())
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["num_steps"] == 6
    assert [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()][-1] in (
        4,
        6,
    )


def test_one_and_eight_devices_give_the_same_steps(repo_root, records_dir, tmp_path, eight_devices):
    """Sharding the batch over 8 devices must not change the maths of a step: same losses (the
    forward over the global batch) and same parameters after the update (the gradient reduction).

    Two steps only, at a small SGD rate: DGCNN's kNN in feature space is a discontinuous function
    of the parameters, so float reduction-order noise (~1e-7) flips near-tied neighbours and the
    two trajectories separate after a few steps (measured: 3.6e-4 loss gap at step 3, 1% at
    step 4). A real sharding bug (local negatives, unreduced or mis-scaled gradients) moves the
    parameters by the size of an update (~0.06 here), far above the tolerance."""
    # SGD: Adam's first steps are sign(g) * lr, which turns float-rounding differences of
    # near-zero gradients into full-size updates.
    losses, params = {}, {}
    for devices in (1, 8):
        config = _config(
            repo_root,
            records_dir,
            **{
                "mesh.num_devices": devices,
                "train.num_steps": 2,
                "optim.name": "sgd",
                "optim.lr": 1e-3,
            },
        )
        pretrain.train_and_evaluate(config, str(tmp_path / str(devices)))
        losses[devices] = _losses(tmp_path / str(devices))
        step, state = _final_state(tmp_path / str(devices))
        assert step == 2
        params[devices] = state["params"]
    for step in (1, 2):  # measured: 8.5e-7 and 2.3e-6 relative
        assert losses[8][step] == pytest.approx(losses[1][step], rel=2e-5), step
    flat_1, tree_1 = jax.tree.flatten(params[1])
    flat_8, tree_8 = jax.tree.flatten(params[8])
    assert tree_1 == tree_8
    for one, eight in zip(flat_1, flat_8, strict=True):  # measured: at most 7e-6 apart
        np.testing.assert_allclose(eight, one, rtol=0, atol=1e-4)


RESUME_STEPS = 12  # long enough that a signal sent after step 3 lands before the end


def _launch(repo_root, workdir, records_dir, *extra):
    env = dict(
        os.environ, MMPOINT_NO_PROGRESS="1", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "launch/pretrain.py",
            f"--config={CONFIG}",
            f"--workdir={workdir}",
            f"--config.data.records={records_dir}",
            "--config.mesh.num_devices=1",
            f"--config.train.num_steps={RESUME_STEPS}",
            *extra,
        ],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_step(proc, workdir, step, timeout=300):
    """Until the run has logged `step` and holds a complete checkpoint."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended early ({proc.returncode}):\n{proc.stdout.read()}")
        if (
            max(_losses(workdir) or [0]) >= step
            and checkpointing.latest_step_dir(workdir) is not None
        ):
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("run did not reach step {step}")


@pytest.fixture(scope="module")
def uninterrupted_run(repo_root, records_dir, tmp_path_factory):
    """The same command as the interrupted runs, never stopped (same process setup, same program)."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = _launch(repo_root, workdir, records_dir)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    return workdir


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopped_run_resumes_bitwise(repo_root, records_dir, uninterrupted_run, tmp_path, sig):
    reference_dir = uninterrupted_run
    # slow the loop down so the signal lands mid-run (the same steps are computed either way)
    proc = _launch(repo_root, tmp_path, records_dir, "--config.ckpt.every_steps=2")
    _wait_for_step(proc, tmp_path, 3)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, output
        assert "preemption" in output
        stopped_at, _ = _final_state(tmp_path)
        assert 3 <= stopped_at < RESUME_STEPS  # saved at the step boundary after the notice
    else:
        assert proc.returncode == -signal.SIGKILL
    resumed = _launch(repo_root, tmp_path, records_dir)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming from step" in output
    step, state = _final_state(tmp_path)
    ref_step, ref_state = _final_state(reference_dir)
    assert step == ref_step == RESUME_STEPS
    _assert_trees_equal(state, ref_state)


def test_nonfinite_loss_stops_with_step_and_term(repo_root, records_dir, tmp_path):
    config = _config(
        repo_root,
        records_dir,
        **{
            "mesh.num_devices": 1,
            "optim.lr": 1e30,
            "ckpt.every_steps": 1,
            "schedule.name": "constant",
        },
    )
    with pytest.raises(pretrain.NonFiniteLossError, match=r"step (\d+) in .*loss/") as info:
        pretrain.train_and_evaluate(config, str(tmp_path))
    bad_step = int(info.value.args[0].split("step ")[1].split(" ")[0])
    kept = checkpointing.latest_step_dir(tmp_path)
    assert kept is not None and int(kept.name) <= bad_step
    state = checkpointing.restore_subtree(kept / "state")
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))


def test_init_from_export_warm_starts_the_point_encoder(
    repo_root, records_dir, reference_run, tmp_path
):
    reference_dir, _ = reference_run
    encoder = checkpointing.restore_encoder(reference_dir)
    checkpointing.save_encoder(tmp_path / "export", encoder.variables, encoder.model)
    config = _config(
        repo_root,
        records_dir,
        **{"mesh.num_devices": 1, "train.num_steps": 1, "init_from": str(tmp_path / "export")},
    )
    loaded, _ = checkpointing.load_init_variables(tmp_path / "export")
    pretrain.train_and_evaluate(config, str(tmp_path / "run"))
    # the warm-started run's first step moved away from the export, but only by one Adam step
    _, state = _final_state(tmp_path / "run")
    first = jax.tree.leaves(state["params"]["point_encoder"])
    start = jax.tree.leaves(loaded["params"]["point_encoder"])
    lr = config.optim.lr
    for after, before in zip(first, start, strict=True):
        assert np.max(np.abs(after - before)) <= lr * 1.01 + 1e-7


def test_bad_config_value_names_field(repo_root, records_dir, tmp_path):
    config = _config(repo_root, records_dir, **{"model.mode": "simclr"})
    with pytest.raises(config_lib.ConfigError, match="model.mode"):
        pretrain.train_and_evaluate(config, str(tmp_path))
