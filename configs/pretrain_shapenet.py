"""MM-Point pretraining at paper scale: ShapeNet records, DGCNN (k 20, emb 1024), 2048 points,
ResNet-50 at 224, m = 3 views with Multi-MLP heads and the multi-level image ladder.

Records come from the render stage (ShapeNetCore meshes, or CrossPoint's ShapeNetRender layout
imported with `input_format=crosspoint`):

  python launch/render.py --config=configs/render.py --config.input=/data/ShapeNetCore.v2 \
      --config.output=/data/records/shapenet --config.workers=32
  # one GPU / one host:
  python launch/pretrain.py --config=configs/pretrain_shapenet.py \
      --config.data.records=/data/records/shapenet --workdir=/runs/mmpoint_shapenet
  # a TPU pod slice (records and workdir in a bucket):
  launch/tpu_pod.sh --name=mmpoint --zone=us-central2-b --accelerator=v4-32 \
      --config=configs/pretrain_shapenet.py --workdir=gs://BUCKET/runs/mmpoint \
      -- --config.data.records=gs://BUCKET/records/shapenet

Args (`configs/pretrain_shapenet.py:views=6,runlocal`): views (m), runlocal (CPU-sized shapes,
for checking the command). Sweep: `python launch/sweep.py --config=configs/pretrain_shapenet.py`.
Expected: the paper reports 92.4 % ModelNet40 / 87.8 % ScanObjectNN linear SVM after pretraining
(DATA_FORMATS.md C); not yet reproduced with this code (no accelerator time so far).
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.pretrain_config import PAPER_STEPS, base_config, shrink_for_cpu


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False, views=3)
    config = base_config(mode="mmpoint", num_views=arg.views)
    # Global batch 32 (CrossPoint used 20 on one GPU): it splits over 1, 2, 4, 8, 16, 32 devices.
    config.train.batch_size = 32
    config.train.num_steps = PAPER_STEPS
    config.train.log_every_steps = 50
    config.ckpt.every_steps = 2000
    if arg.runlocal:
        shrink_for_cpu(config)
    return config


def get_sweep(arg=None):
    """Views and learning rate: the paper's claim is that more views help."""
    del arg
    return [{"model.num_views": m, "optim.lr": lr} for m in (1, 3, 6) for lr in (5e-4, 1e-3)]
