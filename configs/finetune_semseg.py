"""Fine-tuning semantic segmentation on S3DIS: the pretraining DGCNN (9 input channels) as the
trunk of DGCNN's sem-seg network (first kNN graph on the normalised room coordinates, head
512-256; see mmpoint_jax/models/segmentation.py), DGCNN's recipe of DATA_FORMATS.md B5.

  python launch/finetune.py --config=configs/finetune_semseg.py \
      --config.data.root=data/indoor3d_sem_seg_hdf5_data \
      --config.init_from=workdirs/pretrain_run --workdir=workdirs/ft_semseg_area5

Recipe: 4,096-point blocks of 9 channels, 13 classes, Area 5 held out (`data.test_area`; point
`data.test_root` at DGCNN's non-overlapping test blocks to score those); point shuffle only;
label-smoothed cross-entropy (0.2); SGD lr 0.1, momentum 0.9, L2 1e-4, cosine to 1e-3; 100
epochs of batch 32, k = 20; OA, mean class accuracy and mIoU from point counts summed over the
test set, every epoch, the best in eval.json. A pretrained 3-channel encoder loads except its
first EdgeConv (input width differs; listed in init_from.json). Not yet reproduced with this code.

Args: runlocal (test-sized network; point `data.root` at a small h5 folder).
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.finetune_config import base_config, shrink_for_tests


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False)
    config = base_config("semseg")
    config.train.batch_size = 32
    config.train.num_epochs = 100.0
    if arg.runlocal:
        shrink_for_tests(config)
    return config


def get_sweep(arg=None):
    """The six folds of the 6-fold protocol (pool their confusion counts afterwards)."""
    del arg
    return [{"data.test_area": area} for area in range(1, 7)]
