"""The sections every evaluation config has (`configs/svm.py`, `configs/fewshot.py`), with the
papers' protocol as defaults:

  protocol     'svm', 'fewshot' or both ('svm,fewshot': features are extracted once)
  checkpoint   a pretraining workdir (its latest step), one step folder, an encoder export (e.g.
               a converted PyTorch checkpoint), or 'none': a randomly initialised encoder built
               from `model`, its BatchNorm statistics re-estimated on the train split
  data         splits.default_data_config(): format, root, num_points (1024), split names
  model        the point encoder of `checkpoint=none` (a checkpoint brings its own)
  override_k   0 keeps the checkpoint's k; MM-Point's notebooks evaluate a k=20 DGCNN with 15
  batch_size   clouds per forward pass (feature extraction and BN re-estimation)
  bn_reestimate_clouds  0: re-estimate on the whole train split (the protocol); n > 0: on a
               seeded random subset of n clouds (ModelNet40's 9,840 take ~30 min on 2 CPU cores)
  seed         random init, validation split for C, few-shot episodes, t-SNE
  svm          C (0.01), C_candidates (non-empty: choose C on a validation split of train),
               val_fraction, kernel ('auto' | 'gram' | 'linear': the literal libsvm call),
               standardised (also report StandardScaler features beside the papers' number)
  fewshot      ways x shots (5, 10 x 10, 20), n_query (20), n_trials (10), C (1.0)
  tsne         True writes `tsne.png` of one split's features coloured by class
               (`tsne_options.split`: 'test' = data.test_split, 'train' = data.train_split)
  save_features  True writes `features_<split>.npy` (float32 [M, F]) and `labels_<split>.npy`
"""

from __future__ import annotations

import ml_collections

from mmpoint_jax import config_lib
from mmpoint_jax.evaluate import fewshot, svm, tsne
from mmpoint_jax.evaluate.splits import default_data_config
from mmpoint_jax.models import default_point_encoder_config

PROTOCOLS = ("svm", "fewshot")
NO_CHECKPOINT = "none"


def base_config(protocol: str = "svm") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.protocol = protocol
    config.checkpoint = ""
    config.data = default_data_config()
    config.model = default_point_encoder_config("dgcnn")
    config.override_k = 0
    config.batch_size = 64
    config.bn_reestimate_clouds = 0
    config.seed = 0
    config.svm = ml_collections.ConfigDict(
        dict(
            C=svm.DEFAULT_C,
            C_candidates=(),
            val_fraction=0.2,
            kernel="auto",
            standardised=True,
        )
    )
    config.fewshot = ml_collections.ConfigDict(
        dict(
            ways=(5, 10),
            shots=(10, 20),
            n_query=fewshot.DEFAULT_QUERIES,
            n_trials=fewshot.DEFAULT_TRIALS,
            C=fewshot.FEWSHOT_C,
        )
    )
    config.tsne = False
    config.tsne_options = ml_collections.ConfigDict(
        dict(
            split="test",  # which role: "train" or "test"
            max_points=5000,
            perplexity=tsne.DEFAULT_PERPLEXITY,
            max_iter=tsne.DEFAULT_MAX_ITER,
            num_threads=0,  # 0: sklearn's default (all cores); 1 is faster on busy machines
        )
    )
    config.save_features = False
    return config


def get_config(protocol: str, arg: str | None) -> ml_collections.ConfigDict:
    """What `configs/svm.py` and `configs/fewshot.py` return; arg: `runlocal`."""
    arg = config_lib.parse_arg(arg, runlocal=False)
    config = base_config(protocol)
    if arg.runlocal:
        shrink_for_local_run(config)
    return config


def shrink_for_local_run(config: ml_collections.ConfigDict) -> None:
    """`runlocal`: a test-sized encoder for checkpoint=none, small batches, quick few-shot/t-SNE."""
    config.model.k = 4
    config.model.emb_dims = 32
    config.model.widths = (8, 8, 16, 16)
    config.batch_size = 16
    config.fewshot.n_trials = 3
    config.tsne_options.max_points = 500
    config.tsne_options.max_iter = 250
    config.tsne_options.num_threads = 1
