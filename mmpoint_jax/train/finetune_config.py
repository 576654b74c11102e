"""The sections every fine-tuning config has, with the DGCNN-family recipes as defaults.

`configs/finetune_{cls,partseg,semseg}.py` start from `base_config(task)` and change only what
their dataset needs (DATA_FORMATS.md B3-B5), so a field means the same thing in every config:

  task        'classification' | 'partseg' | 'semseg'
  seed        one root seed: model init, data order, augmentation and dropout draws
  data        format, root (the dataset folder itself), train_split / test_split, num_points
              (the first N stored points, as the references), skip_bad_records; per task:
              cls: the linear-SVM evaluation's section (`evaluate/splits.py`: variant and
              background for ScanObjectNN); partseg: txt_seed (txt release resampling);
              semseg: test_area and test_root (the held-out area; an optional folder of
              separate test blocks, e.g. DGCNN's non-overlapping ones)
  model       point_encoder (models/build.py; emb_dims / widths are taken from `init_from`'s
              encoder when one is given), dropout; per task: classifier_hidden (cls),
              transform_net (partseg), graph_channels (semseg: channels of the first kNN graph)
  augment     on device, per example: scale (per-axis U[scale_low, scale_high] on xyz),
              shift (per-axis U[-shift_range, shift_range]), shuffle (point order, with labels)
  loss        label_smoothing (DGCNN's: 1 - eps on the true class, eps / (C - 1) elsewhere)
  optim       SGD lr 0.1, momentum 0.9, L2 weight decay 1e-4 (PyTorch semantics)
  schedule    cosine from lr to lr * final_lr_fraction (0.01: 0.1 -> 1e-3) over the run
  train       batch_size (global), num_steps | num_epochs (exactly one non-zero: the recipes set
              num_epochs; for steps pass `--config.train.num_epochs=0 --config.train.num_steps=N`),
              log_every_steps
  ckpt        every_steps | every_epochs, max_to_keep, use_async
  evals       every_steps | every_epochs (test-set evaluation; also at the end), batch_size
              (global); partseg: part_argmax ('all': argmax over every part, as CrossPoint and
              DGCNN report; 'category': over the shape's own category's parts, PointNet++-style;
              the other one is reported beside it)
  init_from   '' (scratch) | pretraining workdir | checkpoint step folder | encoder export
  mesh        num_devices (None = all)
"""

from __future__ import annotations

import ml_collections

from mmpoint_jax.evaluate import splits
from mmpoint_jax.models import default_point_encoder_config
from mmpoint_jax.train import optim

TASKS = ("classification", "partseg", "semseg")
PART_ARGMAX = ("all", "category")


def base_config(task: str) -> ml_collections.ConfigDict:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    config = ml_collections.ConfigDict()
    config.task = task
    config.seed = 0
    config.data = ml_collections.ConfigDict(
        dict(
            format="",
            root="",
            train_split="train",
            test_split="test",
            num_points=1024,
            skip_bad_records=False,
        )
    )
    config.model = ml_collections.ConfigDict(
        dict(point_encoder=default_point_encoder_config("dgcnn"), dropout=0.5)
    )
    config.augment = ml_collections.ConfigDict(
        dict(
            scale=False,
            scale_low=2.0 / 3.0,
            scale_high=1.5,
            shift=False,
            shift_range=0.2,
            shuffle=True,
        )
    )
    config.loss = ml_collections.ConfigDict(dict(label_smoothing=0.2))
    config.optim = optim.default_optim_config(name="sgd", lr=0.1, weight_decay=1e-4)
    config.schedule = optim.default_schedule_config()
    config.schedule.final_lr_fraction = 0.01
    config.train = ml_collections.ConfigDict(
        dict(batch_size=32, num_steps=0, num_epochs=250.0, log_every_steps=50)
    )
    config.ckpt = ml_collections.ConfigDict(
        dict(every_steps=0, every_epochs=10.0, max_to_keep=3, use_async=True)
    )
    config.evals = ml_collections.ConfigDict(dict(every_steps=0, every_epochs=1.0, batch_size=64))
    config.init_from = ""
    config.mesh = ml_collections.ConfigDict(
        dict(num_devices=ml_collections.FieldReference(None, field_type=int))
    )

    if task == "classification":
        config.data = splits.default_data_config()
        config.model.classifier_hidden = (512, 256)
        config.augment.scale = True
        config.augment.shift = True
    elif task == "partseg":
        config.data.format = "shapenetpart_h5"
        config.data.train_split = "trainval"
        config.data.num_points = 2048
        config.data.txt_seed = 0
        config.model.point_encoder.k = 40
        config.model.transform_net = True
        config.evals.part_argmax = "all"
    else:
        config.data.format = "s3dis_h5"
        config.data.num_points = 4096
        config.data.test_area = 5
        config.data.test_root = ""
        config.model.graph_channels = (6, 7, 8)
    return config


def shrink_for_tests(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `runlocal` sizes every fine-tune config shares: a tiny DGCNN, a few steps."""
    config.data.num_points = 64
    # plain EdgeConv: the same numbers as the factorised default (tests/test_models_dgcnn.py),
    # a third less compile time at this size, where compiling is most of a run
    config.model.point_encoder.update(k=4, emb_dims=32, widths=(8, 8, 16, 16), edgeconv="plain")
    config.train.update(batch_size=8, num_epochs=0.0, num_steps=8, log_every_steps=1)
    config.ckpt.update(every_epochs=0.0, every_steps=4)
    config.evals.update(every_epochs=0.0, every_steps=4, batch_size=8)
    return config
