"""MM-Point pretraining that fits 2 CPU cores: the procedural shapes, DGCNN (k 10, emb 256) on
512 points, ResNet-18 at 64 px, m = 3 views, batch 32 (the issue's "tiny scale").

  python launch/pretrain.py --config=configs/pretrain_tiny.py --workdir=workdirs/tiny
  python launch/pretrain.py --config=configs/pretrain_tiny.py:mode=crosspoint --workdir=workdirs/tiny_cp

With `data.records` left at its default, the first run generates the procedural shapes and renders
them into `workdirs/procedural_records` (about a minute; reused afterwards). Point
`--config.data.records=DIR` at any render-stage output instead.

Args: mode (mmpoint | crosspoint), views (m, mmpoint only), runlocal (test-sized network: seconds
per step instead of one). Expected on this 2-core machine: about 1 s per step of 32 objects
(bench/pretrain.py), so the default 300 steps take about 5 minutes.
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.pretrain_config import base_config


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False, mode="mmpoint", views=3)
    views = 1 if arg.mode == "crosspoint" else arg.views
    config = base_config(mode=arg.mode, num_views=views)

    config.data.records = "workdirs/procedural_records"
    config.data.num_points = 512
    config.data.image_size = 64
    config.data.num_workers = 0  # decoding 64-px views is cheap next to a CPU train step
    # Used only when `data.records` holds no render-stage output yet.
    config.data.procedural = ml_collections.ConfigDict(
        dict(num_per_class=40, seed=1000, views=6, image_size=64, points=1024, workers=2)
    )

    config.model.point_encoder.k = 10
    config.model.point_encoder.emb_dims = 256
    config.model.point_head_hidden = 256
    config.model.image_encoder.name = "resnet18"

    config.train.batch_size = 32
    config.train.num_steps = 300
    config.train.log_every_steps = 10
    config.ckpt.every_steps = 100

    if arg.runlocal:  # test-sized: compiles in seconds, steps in a fraction of one
        config.data.num_points = 64
        config.data.image_size = 32
        config.data.procedural.update(
            num_per_class=2, views=4, image_size=32, points=128, workers=0
        )
        config.model.point_encoder.k = 4
        config.model.point_encoder.emb_dims = 32
        config.model.point_encoder.widths = (8, 8, 16, 16)
        config.model.image_encoder.width = 8
        config.model.point_head_hidden = 32
        config.model.image_head_hidden = 16
        config.model.head_dims = (8,) if arg.mode == "crosspoint" else (16, 8)
        config.train.batch_size = 8
        config.train.num_steps = 6
        config.train.log_every_steps = 1
        config.ckpt.every_steps = 2
    return config


def get_sweep(arg=None):
    """Views x weight of the inter-modal term, at the tiny scale."""
    del arg
    return [{"loss.w_inter": w, "optim.lr": lr} for w in (0.5, 1.0) for lr in (1e-3, 2e-3)]
