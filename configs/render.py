"""The offline render stage: meshes (or CrossPoint's rendered layout) to ArrayRecord shards.

  python launch/render.py --config=configs/render.py \
      --config.input=/data/ShapeNetCore.v2 --config.output=/data/records/shapenet \
      --config.workers=16

  # procedural shapes, CPU-sized (views=4 at 64 px):
  python launch/render.py --config=configs/render.py:runlocal \
      --config.input=/tmp/shapes --config.output=/tmp/rec

  # labelled points-only evaluation set:
  python launch/render.py --config=configs/render.py:views=0 --config.input=... --config.output=...

Re-running the same command resumes: complete shards are kept, the rest are redone, and the
result is byte-identical to an uninterrupted run whatever `workers` is. On this 2-core machine a
worker renders about 110 views/s of 224x224 (see bench/render.py).
"""

from mmpoint_jax import config_lib
from mmpoint_jax.data import render_stage


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=False, views=24, preset="r2n2")
    return render_stage.default_config(views=arg.views, preset=arg.preset, runlocal=arg.runlocal)
