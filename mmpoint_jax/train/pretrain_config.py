"""The sections every pretraining config has, with the reference recipe as defaults.

Config files in `configs/pretrain_*.py` start from `base_config(mode, num_views)` and change only
what their scale needs, so a field means the same thing in every config:

  seed        one root seed: model init, data order, every augmentation draw
  data        records (render-stage output folder), split, num_points, image_size (views fed to
              the ResNet, resized on the host when stored at another size), view_selection,
              num_workers, skip_bad_records
  model       models.default_model_config (mode, num_views, towers, heads)
  augment     points (CrossPoint's chain) and images (the multi-level ladder)
  loss        losses.default_loss_config + `sharded` (shard_map over the data axis)
  optim       Adam, lr 1e-3, L2 weight decay 1e-6 (CrossPoint)
  schedule    cosine to 0 over the run
  train       batch_size (global), num_steps | num_epochs (exactly one non-zero; configs set
              num_steps so `--config.train.num_steps=N` always works; for epochs pass
              `--config.train.num_steps=0 --config.train.num_epochs=E`), log_every_steps
  ckpt        every_steps, max_to_keep, use_async
  evals.svm   periodic linear SVM on a labelled record folder (every_steps 0 = off); C fixed, or
              chosen among C_candidates on a validation split of its train split
  init_from   '' or a checkpoint / encoder export to warm-start from
  mesh        num_devices (None = all)
"""

from __future__ import annotations

import ml_collections

from mmpoint_jax import losses
from mmpoint_jax.augment import images as image_aug
from mmpoint_jax.augment import points as point_aug
from mmpoint_jax.models import default_model_config
from mmpoint_jax.train import optim


def base_config(mode: str = "mmpoint", num_views: int = 3) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict(
        dict(
            records="",
            split="train",
            num_points=2048,
            image_size=224,
            view_selection="random",  # m of the V stored views, new ones each epoch
            num_workers=4,
            skip_bad_records=False,
        )
    )
    config.model = default_model_config(mode=mode, num_views=num_views)
    config.augment = ml_collections.ConfigDict(
        dict(
            points=point_aug.default_point_aug_config(),
            images=image_aug.crosspoint_image_aug_config()
            if mode == "crosspoint"
            else image_aug.default_image_aug_config(),
        )
    )
    config.loss = losses.default_loss_config(mode)
    config.loss.sharded = True
    config.optim = optim.default_optim_config()
    config.schedule = optim.default_schedule_config()
    config.train = ml_collections.ConfigDict(
        dict(batch_size=32, num_steps=1000, num_epochs=0.0, log_every_steps=50)
    )
    config.ckpt = ml_collections.ConfigDict(dict(every_steps=1000, max_to_keep=3, use_async=True))
    config.evals = ml_collections.ConfigDict()
    config.evals.svm = ml_collections.ConfigDict(
        dict(
            every_steps=0,
            records="",
            train_split="train",
            test_split="test",
            num_points=1024,
            C=0.01,
            C_candidates=(),
            batch_size=64,
        )
    )
    config.init_from = ""
    config.mesh = ml_collections.ConfigDict(
        dict(num_devices=ml_collections.FieldReference(None, field_type=int))
    )
    return config


# 100 epochs of the R2N2 13-category ShapeNet set (~43,783 objects) at batch 32 (CrossPoint's recipe).
PAPER_STEPS = 100 * 43_783 // 32


def shrink_for_cpu(config: ml_collections.ConfigDict) -> None:
    """`runlocal` of the paper-scale configs: the same program at the tiny scale, a few steps,
    so a command can be checked on a laptop before it goes to a pod."""
    config.data.update(num_points=512, image_size=64, num_workers=0)
    config.model.point_encoder.update(k=10, emb_dims=256)
    config.model.image_encoder.name = "resnet18"
    config.train.update(batch_size=8, num_steps=4, log_every_steps=2)
    config.ckpt.every_steps = 2
