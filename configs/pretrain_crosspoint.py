"""CrossPoint pretraining (the one-view special case) at paper scale, on the same records and
budget as `pretrain_shapenet.py`, so multi-view vs single-view is measured like for like.

CrossPoint's recipe (DATA_FORMATS.md B6): one 3D head shared by the intra-modal NT-Xent and the
cross-modal NT-Xent (mean of the two clouds' projections vs the image projection), one random
view per object per epoch, image transform = colour jitter + flip, DGCNN with k = 15 as in its
training script, Adam 1e-3 / L2 1e-6, cosine.

  python launch/pretrain.py --config=configs/pretrain_crosspoint.py \
      --config.data.records=/data/records/shapenet --workdir=/runs/crosspoint_shapenet

Args: runlocal (CPU-sized shapes). Expected: CrossPoint reports 91.2 % ModelNet40 linear SVM
(DATA_FORMATS.md C); not yet reproduced with this code.
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.pretrain_config import PAPER_STEPS, base_config, shrink_for_cpu


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False)
    config = base_config(mode="crosspoint", num_views=1)
    config.model.point_encoder.k = 15
    config.train.batch_size = 32
    config.train.num_steps = PAPER_STEPS
    config.ckpt.every_steps = 2000
    if arg.runlocal:
        shrink_for_cpu(config)
    return config


def get_sweep(arg=None):
    del arg
    return [{"optim.lr": lr} for lr in (5e-4, 1e-3, 2e-3)]
