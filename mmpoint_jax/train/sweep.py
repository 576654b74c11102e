"""Expands a config's `get_sweep(arg)` (a list of {dotted_key: value}) into named runs.

Every swept key is checked against the config before anything runs: a misspelt key fails at
expansion, not hours later on a cluster.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections import Counter
from typing import Any

from mmpoint_jax import config_lib


@dataclasses.dataclass(frozen=True)
class SweepRun:
    name: str  # workdir suffix, e.g. "lr3e-4_num_views6"
    overrides: dict[str, Any]

    def flags(self) -> list[str]:
        return [
            f"--config.{key}={format_flag_value(value)}" for key, value in self.overrides.items()
        ]


def format_flag_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return (
            "("
            + ",".join(format_flag_value(v) for v in value)
            + ("," if len(value) == 1 else "")
            + ")"
        )
    return str(value)


def short_value(value: Any) -> str:
    """3e-4 -> '3e-4', 0.5 -> '0.5', True -> 'True', (1, 2) -> '1-2'."""
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, (tuple, list)):
        return "-".join(short_value(v) for v in value)
    return str(value).replace("/", "-").replace(" ", "")


def _short_names(keys: list[str]) -> dict[str, str]:
    leaves = Counter(key.rsplit(".", 1)[-1] for key in keys)
    return {
        key: key.rsplit(".", 1)[-1]
        if leaves[key.rsplit(".", 1)[-1]] == 1
        else key.replace(".", "-")
        for key in keys
    }


def expand(config_spec: str) -> list[SweepRun]:
    """Runs of the sweep in `configs/X.py[:arg]`; raises ConfigError naming any unknown key."""
    sweep = config_lib.load_sweep(config_spec)
    all_keys = sorted({key for point in sweep for key in point})
    names = _short_names(all_keys)
    runs = []
    for point in sweep:
        config_lib.load_config(config_spec, dict(point))  # validates keys and value types
        name = (
            "_".join(f"{names[key]}{short_value(value)}" for key, value in point.items()) or "base"
        )
        runs.append(SweepRun(name=name, overrides=dict(point)))
    duplicates = [name for name, count in Counter(run.name for run in runs).items() if count > 1]
    if duplicates:
        raise config_lib.ConfigError(f"sweep of {config_spec} repeats runs: {duplicates}")
    return runs


def command(
    entry: str, config_spec: str, workdir: str, run: SweepRun, python: str = "python"
) -> list[str]:
    return [
        python,
        entry,
        f"--config={config_spec}",
        f"--workdir={workdir.rstrip('/')}/{run.name}",
        *run.flags(),
    ]


def command_line(*args, **kwargs) -> str:
    return shlex.join(command(*args, **kwargs))
