import subprocess
import sys
import textwrap

import pytest

from mmpoint_jax import config_lib
from mmpoint_jax.train import sweep

SWEEP_CONFIG = textwrap.dedent(
    """
    import ml_collections
    from mmpoint_jax import config_lib

    def get_config(arg=None):
        arg = config_lib.parse_arg(arg, runlocal=False, bad=False)
        c = ml_collections.ConfigDict()
        c.optim = ml_collections.ConfigDict(dict(lr=1e-3))
        c.model = ml_collections.ConfigDict(dict(num_views=3, mode="mmpoint"))
        c.bad = arg.bad
        return c

    def get_sweep(arg=None):
        arg = config_lib.parse_arg(arg, runlocal=False, bad=False)
        points = [{"optim.lr": lr, "model.num_views": v} for lr in (3e-4, 1e-3) for v in (1, 6)]
        if arg.bad:
            points.append({"optim.lrr": 1.0})
        return points
    """
)


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "swept.py"
    path.write_text(SWEEP_CONFIG)
    return path


def test_expand_names_and_flags(config_file):
    runs = sweep.expand(str(config_file))
    assert [r.name for r in runs] == [
        "lr3e-4_num_views1",
        "lr3e-4_num_views6",
        "lr1e-3_num_views1",
        "lr1e-3_num_views6",
    ]
    assert runs[0].flags() == ["--config.optim.lr=0.0003", "--config.model.num_views=1"]
    cmd = sweep.command("launch/pretrain.py", str(config_file), "out/", runs[1])
    assert cmd[3] == "--workdir=out/lr3e-4_num_views6"
    # the flags round-trip through the config loader to the swept values
    loaded = config_lib.load_config(str(config_file), runs[0].flags())
    assert loaded.optim.lr == 3e-4 and loaded.model.num_views == 1


def test_unknown_swept_key_fails(config_file):
    with pytest.raises(config_lib.ConfigError, match="optim.lrr"):
        sweep.expand(f"{config_file}:bad")


def test_sweep_cli_prints_commands(repo_root, config_file, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            f"--config={config_file}",
            f"--workdir={tmp_path}/w",
            "--print",
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all("launch/pretrain.py" in line for line in lines)
    assert f"--workdir={tmp_path}/w/lr1e-3_num_views6" in lines[3]
