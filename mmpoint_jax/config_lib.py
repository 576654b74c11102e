"""Config conventions shared by every file in `configs/` and every entry point in `launch/`.

* `parse_arg("runlocal,views=3", runlocal=False, views=6)`: the small typed string after
  `configs/NAME.py:` becomes a ConfigDict; unknown keys and unparsable values are errors.
* `load_config("configs/NAME.py:arg", overrides)`: what `--config=... --config.a.b=v` does,
  for tests and the sweep driver, with the same errors for unknown fields and wrong types.
* `duration_steps(section, "num", steps_per_epoch)`: the one converter from durations with units
  (`num_steps`, `num_epochs`, `every_steps`, ...) to steps; setting two units is an error.
* `check_choice` / `check_positive`: value checks whose errors name the dotted field.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config value or field is wrong; the message names the dotted field."""


def _coerce(key: str, text: str, default: Any) -> Any:
    """Parses `text` to the type of `default` (bool, int, float, str; None accepts a literal)."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config arg '{key}': expected a boolean, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config arg '{key}': expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"config arg '{key}': expected a number, got {text!r}") from None
    if default is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """Parses a config arg such as `runlocal,views=3` against typed defaults.

    A bare key sets a boolean default to True. Keys not in `defaults` raise ConfigError listing
    the known ones, so `configs/x.py:vews=3` fails instead of being ignored.
    """
    values = dict(defaults)
    if arg:
        for item in arg.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, text = item.partition("=")
            key = key.strip()
            if key not in defaults:
                known = ", ".join(sorted(defaults)) or "(none)"
                raise ConfigError(f"unknown config arg '{key}' in {arg!r}; known: {known}")
            if not sep:
                if not isinstance(defaults[key], bool):
                    raise ConfigError(f"config arg '{key}' needs a value ('{key}=...')")
                values[key] = True
            else:
                values[key] = _coerce(key, text.strip(), defaults[key])
    return ml_collections.ConfigDict(values)


def _resolve_parent(config: ml_collections.ConfigDict, dotted: str):
    node = config
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or part not in node:
            raise ConfigError(f"unknown config field '{'.'.join(parts[: i + 1])}' (in '{dotted}')")
        node = node[part]
    if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or parts[-1] not in node:
        raise ConfigError(f"unknown config field '{dotted}'")
    return node, parts[-1]


def get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node, leaf = _resolve_parent(config, dotted)
    return node[leaf]


def has_field(config: ml_collections.ConfigDict, dotted: str) -> bool:
    try:
        _resolve_parent(config, dotted)
        return True
    except ConfigError:
        return False


def set_field(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """Sets an existing field; strings are parsed to the field's type like a command-line flag."""
    node, leaf = _resolve_parent(config, dotted)
    current = node[leaf]
    if isinstance(value, str) and not isinstance(current, str):
        if current is None:
            value = _coerce(dotted, value, None)
        elif isinstance(current, (bool, int, float)):
            value = _coerce(dotted, value, current)
        elif isinstance(current, (tuple, list)):
            try:
                value = type(current)(ast.literal_eval(value))
            except (ValueError, SyntaxError, TypeError):
                raise ConfigError(
                    f"config field '{dotted}': expected a sequence, got {value!r}"
                ) from None
    try:
        node[leaf] = value
    except TypeError as e:
        raise ConfigError(f"config field '{dotted}': {e}") from None


def _import_config_module(path: str):
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    name = "_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config(arg)")
    return module


def split_config_path(spec: str) -> tuple[str, str | None]:
    """`configs/x.py:runlocal` -> ("configs/x.py", "runlocal")."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def load_config(
    spec: str, overrides: Mapping[str, Any] | Sequence[str] | None = None, lock: bool = True
) -> ml_collections.ConfigDict:
    """Loads `configs/NAME.py[:arg]` and applies dotted overrides ({"a.b": v} or ["a.b=v"])."""
    path, arg = split_config_path(spec)
    config = _import_config_module(path).get_config(arg)
    if lock:
        config.lock()
    if overrides:
        items = (
            overrides.items()
            if isinstance(overrides, Mapping)
            else (o.removeprefix("--config.").split("=", 1) for o in overrides)
        )
        for key, value in items:
            set_field(config, key, value)
    return config


def load_sweep(spec: str) -> list[dict[str, Any]]:
    """The `get_sweep(arg)` list of a config file ([] when the file defines none)."""
    path, arg = split_config_path(spec)
    module = _import_config_module(path)
    if not hasattr(module, "get_sweep"):
        return []
    return list(module.get_sweep(arg))


def duration_steps(
    section: ml_collections.ConfigDict,
    base: str,
    steps_per_epoch: int | None = None,
    where: str = "",
) -> int | None:
    """Converts `{base}_steps` or `{base}_epochs` of `section` into steps (None if neither set).

    A duration is unset when None or 0 (command-line overrides cannot write None into an int
    field, so `--config.train.num_steps=0 --config.train.num_epochs=5` switches to epochs).
    Setting both is an error: a run has one length, said once.
    """
    prefix = f"{where}." if where else ""
    steps = section.get(f"{base}_steps") or None
    epochs = section.get(f"{base}_epochs") or None
    if steps is not None and epochs is not None:
        raise ConfigError(
            f"set only one of '{prefix}{base}_steps' ({steps}) and '{prefix}{base}_epochs' ({epochs}); "
            f"0 unsets one, e.g. --config.{prefix}{base}_steps=0"
        )
    if steps is not None:
        if steps < 0:
            raise ConfigError(f"'{prefix}{base}_steps' must be >= 0, got {steps}")
        return int(steps)
    if epochs is not None:
        if steps_per_epoch is None:
            raise ConfigError(f"'{prefix}{base}_epochs' needs the dataset size to convert to steps")
        if epochs < 0:
            raise ConfigError(f"'{prefix}{base}_epochs' must be >= 0, got {epochs}")
        return max(1, int(round(epochs * steps_per_epoch)))
    return None


def check_choice(config: ml_collections.ConfigDict, dotted: str, choices: Sequence[Any]) -> Any:
    value = get_field(config, dotted)
    if value not in choices:
        raise ConfigError(f"config field '{dotted}' = {value!r}; expected one of {list(choices)}")
    return value


def check_positive(config: ml_collections.ConfigDict, dotted: str, allow_zero: bool = False) -> Any:
    value = get_field(config, dotted)
    ok = value is not None and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"config field '{dotted}' = {value!r}; must be {bound}")
    return value
