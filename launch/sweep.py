"""Expands a config's sweep (`get_sweep(arg)`) into runs with their own workdirs.

python launch/sweep.py --config=configs/pretrain_tiny.py --workdir=workdirs/sweep            # run one after another
python launch/sweep.py --config=configs/pretrain_shapenet.py --workdir=gs://b/sweep --print  # commands for a cluster
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = flags.DEFINE_string("config", None, "configs/NAME.py[:arg] with a get_sweep(arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Base folder; each run gets <workdir>/<run name>.")
_ENTRY = flags.DEFINE_string("entry", "launch/pretrain.py", "Entry point each run calls.")
_PRINT = flags.DEFINE_bool("print", False, "Print one command per run instead of running them.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    from mmpoint_jax.train import sweep

    runs = sweep.expand(_CONFIG.value)
    if not runs:
        sys.exit(f"error: {_CONFIG.value} defines no get_sweep() or an empty sweep")
    extra = argv[1:]
    for run in runs:
        cmd = (
            sweep.command(_ENTRY.value, _CONFIG.value, _WORKDIR.value, run, python=sys.executable)
            + extra
        )
        if _PRINT.value:
            print(
                sweep.command_line(_ENTRY.value, _CONFIG.value, _WORKDIR.value, run)
                + "".join(" " + e for e in extra)
            )
            continue
        print(f"=== sweep run {run.name}", file=sys.stderr, flush=True)
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            sys.exit(f"error: sweep run {run.name} failed with exit code {result.returncode}")


if __name__ == "__main__":
    cli.run(main, use_jemalloc=False)
