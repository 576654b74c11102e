"""Few-shot classification of frozen features, CrossPoint's protocol: N-way K-shot episodes
(5 and 10 ways x 10 and 20 shots, 20 queries per class, 10 trials), support and queries drawn
from the train split, StandardScaler + linear SVC (C = 1) per episode; mean +- std in percent.

  python launch/evaluate.py --config=configs/fewshot.py --config.checkpoint=exports/crosspoint_dgcnn \
      --config.data.format=modelnet40_h5 --config.data.root=data/modelnet40_ply_hdf5_2048 \
      --workdir=workdirs/fewshot_mn40
  python launch/evaluate.py --config=configs/fewshot.py --config.checkpoint=none \
      --config.data.format=scanobjectnn_h5 --config.data.root=data/ScanObjectNN --workdir=OUT

Only the train split's features are extracted. Episodes are seeded (`--config.seed`): trial t of
a setting is the same whatever the number of trials. Fields: mmpoint_jax/evaluate/eval_config.py.

Args: runlocal (test-sized random-init encoder, 3 trials).
Expected: CrossPoint's paper lists 92.5 +- 3.0 for DGCNN, 5-way 10-shot on ModelNet40 (recalled,
not re-read: DATA_FORMATS.md section B).
"""

import ml_collections

from mmpoint_jax.evaluate import eval_config


def get_config(arg=None) -> ml_collections.ConfigDict:
    return eval_config.get_config("fewshot", arg)
