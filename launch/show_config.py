"""Prints a config as resolved from its file, arg and overrides (what a run would write to config.json).

python launch/show_config.py --config=configs/pretrain_tiny.py:runlocal --config.train.batch_size=8
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli, run_log  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/NAME.py[:arg]", lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    print(json.dumps(run_log.config_to_dict(_CONFIG.value), indent=2, sort_keys=True))


if __name__ == "__main__":
    cli.run(main, use_jemalloc=False)
