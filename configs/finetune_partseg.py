"""Fine-tuning part segmentation on ShapeNetPart: the pretraining DGCNN as the trunk of DGCNN's
part-seg network (16-d category one-hot, spatial transformer, head 256-256-128; see
mmpoint_jax/models/segmentation.py), CrossPoint's recipe of DATA_FORMATS.md B4.

  python launch/finetune.py --config=configs/finetune_partseg.py \
      --config.data.root=data/shapenet_part_seg_hdf5_data \
      --config.init_from=workdirs/pretrain_run --workdir=workdirs/ft_partseg
  python launch/finetune.py --config=configs/finetune_partseg.py \
      --config.data.format=shapenetpart_txt \
      --config.data.root=data/shapenetcore_partanno_segmentation_benchmark_v0_normal --workdir=OUT

Recipe: train on trainval (train + val h5 files), test on the 2,874 test shapes, 2,048 points,
k = 40; point shuffle only; label-smoothed cross-entropy (0.2) over all 50 parts; SGD lr 0.1,
momentum 0.9, L2 1e-4, cosine to 1e-3; 300 epochs of batch 8 (CrossPoint); instance and class
mIoU (parts of the shape's category, a part absent from prediction and truth counts 1) every
epoch, the best epoch in eval.json. Argmax: over all 50 parts (`evals.part_argmax='all'`, what
CrossPoint and DGCNN report); the category-restricted argmax is reported beside it. CrossPoint
reports 85.5 instance mIoU, supervised DGCNN 85.2; not yet reproduced with this code.

Args: runlocal (test-sized network; point `data.root` at a small h5 folder).
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.finetune_config import base_config, shrink_for_tests


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False)
    config = base_config("partseg")
    config.train.batch_size = 8
    config.train.num_epochs = 300.0
    config.evals.batch_size = 16
    if arg.runlocal:
        shrink_for_tests(config)
    return config


def get_sweep(arg=None):
    """With and without DGCNN's spatial transformer in front of the pretrained encoder."""
    del arg
    return [{"model.transform_net": flag} for flag in (True, False)]
