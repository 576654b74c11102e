"""Fine-tuning classification: DGCNN + CrossPoint's classifier head (2048-512-256-C, BN,
dropout 0.5), the supervised DGCNN recipe of DATA_FORMATS.md B3.

  python launch/finetune.py --config=configs/finetune_cls.py \
      --config.data.format=modelnet40_h5 --config.data.root=data/modelnet40_ply_hdf5_2048 \
      --config.init_from=workdirs/pretrain_run --workdir=workdirs/ft_cls_mn40
  python launch/finetune.py --config=configs/finetune_cls.py \
      --config.data.format=scanobjectnn_h5 --config.data.root=data/ScanObjectNN --workdir=OUT

`--config.init_from` takes a pretraining workdir (its latest checkpoint), one checkpoint step
folder or an encoder export (e.g. a converted PyTorch checkpoint); empty trains from scratch.
Re-running the same command resumes. `--config.data.format=records --config.data.root=DIR`
fine-tunes on labelled render-stage records (splits train / test).

Recipe: the first 1,024 stored points; per-axis scale U[2/3, 3/2], per-axis shift U[-0.2, 0.2],
point shuffle (on device); label-smoothed cross-entropy (0.2); SGD lr 0.1, momentum 0.9, L2
1e-4, cosine to 1e-3; 250 epochs of batch 32; test OA and mean class accuracy every epoch, the
best epoch kept in eval.json (the protocol reports it). Supervised DGCNN reaches 92.9 % OA on
ModelNet40 in its paper; not yet reproduced with this code.

Args: runlocal (test-sized network, 8 steps; data: the procedural records that
configs/pretrain_tiny.py renders into workdirs/procedural_records, or any labelled records
folder with train and test splits).
"""

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.train.finetune_config import base_config, shrink_for_tests


def get_config(arg=None) -> ml_collections.ConfigDict:
    arg = config_lib.parse_arg(arg, runlocal=False)
    config = base_config("classification")
    config.data.num_points = 1024
    config.train.batch_size = 32
    config.train.num_epochs = 250.0
    if arg.runlocal:
        shrink_for_tests(config)
        config.data.format = "records"
        config.data.root = "workdirs/procedural_records"
        config.model.classifier_hidden = (32, 16)
    return config


def get_sweep(arg=None):
    """The recipe's learning rate and half of it (a pretrained encoder may want the smaller)."""
    del arg
    return [{"optim.lr": lr} for lr in (0.1, 0.05)]
