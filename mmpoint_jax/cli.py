"""Shared plumbing for the thin entry points in `launch/`.

Every entry point takes `--config=configs/NAME.py[:arg]` (ml_collections config_flags, locked, so
a misspelt `--config.a.b=v` fails) and usually `--workdir`. `run(main)` turns config errors into
one clear line naming the field instead of a traceback, and preloads jemalloc when present.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)


def maybe_reexec_with_jemalloc() -> None:
    """Re-executes this process with jemalloc preloaded, when it is installed and not yet loaded.

    XLA's large CPU temporaries page-fault heavily under glibc malloc (DESIGN.md section 4).
    Set MMPOINT_NO_JEMALLOC=1 to opt out. Only affects the CPU backend's speed, never results.
    """
    if os.environ.get("MMPOINT_NO_JEMALLOC") == "1" or "jemalloc" in os.environ.get(
        "LD_PRELOAD", ""
    ):
        return
    lib = next((p for p in JEMALLOC_PATHS if os.path.exists(p)), None)
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    env["MMPOINT_NO_JEMALLOC"] = "1"  # never loop
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


_UNKNOWN_FIELD = re.compile(r"'(?P<key>[^'\\]+)'")


def _config_flag_args(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--config.") or a.startswith("-config.")]


def _without_traceback(message: str) -> str:
    """config_flags embeds the config file's traceback in its error; keep its first and last line."""
    if "Traceback" not in message:
        return message
    lines = [line for line in message.splitlines() if line.strip()]
    return f"{lines[0]} {lines[-1]}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that names the offending `--config.` field on an unknown key."""
    from absl import flags

    from mmpoint_jax.config_lib import ConfigError

    try:
        return flags.FLAGS(argv)
    except ConfigError as e:  # raised by a config file's get_config(arg)
        sys.exit(f"error: {e}")
    except flags.Error as e:
        sys.exit(f"error: {_without_traceback(str(e))}")
    except (AttributeError, KeyError) as e:
        # config_flags raises AttributeError('...'name'...Did you mean') for a field that does not
        # exist; find which override it came from so the message names the whole dotted path.
        text = str(e)
        match = _UNKNOWN_FIELD.search(text.replace("\\'", "'"))
        leaf = match.group("key") if match else ""
        culprit = next(
            (a.split("=", 1)[0].lstrip("-") for a in _config_flag_args(argv) if leaf and leaf in a),
            None,
        )
        hint = text.split("Did you mean", 1)
        suggestion = (" Did you mean" + hint[1].rstrip("'\"")) if len(hint) == 2 else ""
        field = culprit.removeprefix("config.") if culprit else leaf
        sys.exit(f"error: unknown config field '{field}'.{suggestion.replace(chr(10), ' ')}")
    except TypeError as e:
        sys.exit(f"error: wrong type in a --config override: {e}")


def run(main: Callable[[list[str]], None], use_jemalloc: bool = True) -> None:
    """`absl.app.run(main)` with the conventions above."""
    from absl import app

    if use_jemalloc:
        maybe_reexec_with_jemalloc()

    def _main(argv):
        from absl import flags, logging

        from mmpoint_jax.config_lib import ConfigError

        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO

        try:
            return main(argv)
        except (ConfigError, FileNotFoundError, FileExistsError) as e:
            sys.exit(f"error: {e}")  # a clear line naming the field or path, no traceback

    app.run(_main, flags_parser=parse_flags)
