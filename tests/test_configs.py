"""Every config in configs/: get_config() plain and with `runlocal`, and every swept key exists."""

import pathlib

import pytest

from mmpoint_jax import config_lib
from mmpoint_jax.train import sweep

CONFIGS = sorted(
    p.name for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
)


def test_there_are_configs():
    assert "pretrain_tiny.py" in CONFIGS and "render.py" in CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_plain_and_runlocal(repo_root, name):
    path = str(repo_root / "configs" / name)
    for spec in (path, f"{path}:runlocal"):
        config = config_lib.load_config(spec)
        assert config.is_locked
    with pytest.raises(config_lib.ConfigError, match="unknown config arg"):
        config_lib.load_config(f"{path}:no_such_arg=1")


@pytest.mark.parametrize("name", CONFIGS)
def test_sweep_keys_exist(repo_root, name):
    path = str(repo_root / "configs" / name)
    for run in sweep.expand(path):  # raises ConfigError naming any key the config lacks
        assert run.overrides
