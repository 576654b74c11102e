"""Renders a mesh folder (or imports CrossPoint's rendered layout) into ArrayRecord shards.

  python launch/render.py --config=configs/render.py --config.input=DIR --config.output=DIR \
      [--config.workers=W --config.views=24 --config.image_size=224 --config.points=2048]

Re-running the same command resumes an interrupted run. See mmpoint_jax/data/render_stage.py.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/render.py[:arg]", lock_config=True
)
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    from mmpoint_jax.data import render_stage

    try:
        summary = render_stage.run(_CONFIG.value)
    except render_stage.RenderError as e:
        sys.exit(f"error: {e}")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main, use_jemalloc=False)
