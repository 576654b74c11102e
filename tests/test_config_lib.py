import subprocess
import sys
import textwrap

import ml_collections
import pytest

from mmpoint_jax import config_lib

CONFIG_TEXT = textwrap.dedent(
    """
    import ml_collections
    from mmpoint_jax import config_lib

    def get_config(arg=None):
        arg = config_lib.parse_arg(arg, runlocal=False, views=6)
        config = ml_collections.ConfigDict()
        config.train = ml_collections.ConfigDict(dict(batch_size=32, lr=1e-3, num_steps=100))
        config.model = ml_collections.ConfigDict(dict(name="dgcnn", views=arg.views))
        if arg.runlocal:
            config.train.batch_size = 4
        return config
    """
)


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG_TEXT)
    return path


def _show(repo_root, *args):
    return subprocess.run(
        [sys.executable, str(repo_root / "launch/show_config.py"), *args],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
    )


def test_cli_dotted_override_and_arg(repo_root, config_file):
    result = _show(repo_root, f"--config={config_file}:runlocal,views=3", "--config.train.lr=0.5")
    assert result.returncode == 0, result.stderr
    assert '"batch_size": 4' in result.stdout and '"lr": 0.5' in result.stdout
    assert '"views": 3' in result.stdout


def test_cli_unknown_field_names_it(repo_root, config_file):
    result = _show(repo_root, f"--config={config_file}", "--config.train.batch_sizee=64")
    assert result.returncode != 0
    assert "train.batch_sizee" in result.stderr and "Traceback" not in result.stderr


def test_cli_wrong_type_names_it(repo_root, config_file):
    result = _show(repo_root, f"--config={config_file}", "--config.train.batch_size=lots")
    assert result.returncode != 0
    assert "train.batch_size" in result.stderr and "Traceback" not in result.stderr


def test_cli_unknown_arg_key(repo_root, config_file):
    result = _show(repo_root, f"--config={config_file}:vews=3")
    assert result.returncode != 0 and "vews" in result.stderr and "Traceback" not in result.stderr


def test_load_config_programmatic(config_file):
    config = config_lib.load_config(
        f"{config_file}:views=2", ["train.batch_size=8", "model.name=pointnet"]
    )
    assert (
        config.train.batch_size == 8 and config.model.views == 2 and config.model.name == "pointnet"
    )
    with pytest.raises(config_lib.ConfigError, match="'train.batchsize'"):
        config_lib.load_config(str(config_file), {"train.batchsize": 8})
    with pytest.raises(config_lib.ConfigError, match="'train.batch_size'"):
        config_lib.load_config(str(config_file), {"train.batch_size": "many"})
    with pytest.raises(config_lib.ConfigError, match="'train.batch_size'"):
        config_lib.load_config(str(config_file), {"train.batch_size": 2.5})


def test_parse_arg_types():
    arg = config_lib.parse_arg(
        "runlocal,views=3,lr=0.1,name=x", runlocal=False, views=6, lr=1.0, name=""
    )
    assert arg.runlocal is True and arg.views == 3 and arg.lr == 0.1 and arg.name == "x"
    with pytest.raises(config_lib.ConfigError, match="views"):
        config_lib.parse_arg("views=three", views=6)


def test_duration_steps():
    section = ml_collections.ConfigDict(dict(num_steps=0, num_epochs=2.5))
    assert config_lib.duration_steps(section, "num", steps_per_epoch=10) == 25
    section.num_steps = 7
    with pytest.raises(config_lib.ConfigError, match="only one.*train.num_steps=0"):
        config_lib.duration_steps(section, "num", 10, where="train")
    section.num_epochs = 0.0
    assert config_lib.duration_steps(section, "num") == 7
    section.num_steps = 0
    assert config_lib.duration_steps(section, "num") is None


def test_check_choice_names_field():
    config = ml_collections.ConfigDict(dict(model=dict(mode="simclr")))
    with pytest.raises(config_lib.ConfigError, match="'model.mode'"):
        config_lib.check_choice(config, "model.mode", ("mmpoint", "crosspoint"))
