"""Linear-SVM and few-shot evaluation of a point encoder (pretraining workdir, checkpoint step,
encoder export, or `none` for the random-init baseline); writes `WORKDIR/eval.json`.

  python launch/evaluate.py --config=configs/svm.py --config.checkpoint=workdirs/tiny \
      --config.data.format=records --config.data.root=workdirs/procedural_records --workdir=OUT
  python launch/evaluate.py --config=configs/fewshot.py --config.checkpoint=none \
      --config.data.format=modelnet40_h5 --config.data.root=data/modelnet40_ply_hdf5_2048 \
      --workdir=OUT

The config files' docstrings list more commands; mmpoint_jax/evaluate/eval_config.py the fields.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/NAME.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (config.json, eval.json, metrics.jsonl, PNGs)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from mmpoint_jax.data.datasets import DatasetFormatError
    from mmpoint_jax.data.records import RecordError
    from mmpoint_jax.evaluate import run
    from mmpoint_jax.train.checkpointing import CheckpointError

    try:
        results = run.evaluate(_CONFIG.value, _WORKDIR.value)
    except (CheckpointError, DatasetFormatError, RecordError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    for line in run.summary_lines(results):
        print(line)
    print(f"wrote {os.path.join(os.path.abspath(_WORKDIR.value), run.EVAL_FILE)}")


if __name__ == "__main__":
    cli.run(main)
