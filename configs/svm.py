"""Linear-SVM evaluation of a point encoder (the papers' protocol: eval-mode 2048-d DGCNN
features of the first 1024 points, sklearn's linear SVC with C = 0.01 on raw features, overall
accuracy on the whole test set; the standardised-feature variant is reported beside it).

  python launch/evaluate.py --config=configs/svm.py --config.checkpoint=workdirs/tiny \
      --config.data.format=records --config.data.root=workdirs/procedural_records \
      --config.data.num_points=512 --workdir=workdirs/tiny_svm
  python launch/evaluate.py --config=configs/svm.py --config.checkpoint=exports/crosspoint_dgcnn \
      --config.data.format=modelnet40_h5 --config.data.root=data/modelnet40_ply_hdf5_2048 \
      --workdir=workdirs/svm_mn40
  python launch/evaluate.py --config=configs/svm.py --config.checkpoint=none \
      --config.data.format=scanobjectnn_h5 --config.data.root=data/ScanObjectNN --workdir=OUT

`--config.checkpoint=none` is the random-init baseline (BatchNorm re-estimated on the train
split); `--config.svm.C_candidates='(0.001,0.005,0.01,0.05,0.1)'` chooses C on a validation
split of train; `--config.tsne=True` adds tsne.png; `--config.protocol=svm,fewshot` adds the
few-shot table from the same features. Fields: mmpoint_jax/evaluate/eval_config.py.

Args: runlocal (test-sized random-init encoder, small batches).
Expected: CrossPoint's DGCNN is reported at 91.2 % on ModelNet40 (DATA_FORMATS.md section B).
A random-init DGCNN on the procedural shapes (12 classes, 240 / 120 objects): 92-93 % with
BatchNorm re-estimated, 77 % with the initial statistics (raw features).
On 2 CPU cores (bench/evaluate.py): features of ModelNet40's 12,308 clouds about 10 minutes
(20 clouds/s), the SVM fit 13 s; `checkpoint=none` adds about 30 minutes of BatchNorm
re-estimation on the 9,840 train clouds (`--config.bn_reestimate_clouds=2048` cuts it to 6).
"""

import ml_collections

from mmpoint_jax.evaluate import eval_config


def get_config(arg=None) -> ml_collections.ConfigDict:
    return eval_config.get_config("svm", arg)
