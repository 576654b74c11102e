"""Fine-tuning entry point: classification, part segmentation or semantic segmentation, from a
pretrained encoder or from scratch (the same command on every host of a pod).

  python launch/finetune.py --config=configs/finetune_cls.py --config.init_from=CKPT \
      --config.data.format=modelnet40_h5 --config.data.root=DIR --workdir=OUT
  python launch/finetune.py --config=configs/finetune_partseg.py --config.data.root=DIR --workdir=OUT
  python launch/finetune.py --config=configs/finetune_semseg.py --config.data.root=DIR --workdir=OUT

Re-running the same command resumes from the latest checkpoint in OUT. Results: OUT/eval.json
(latest test metrics, best so far under `best`), OUT/metrics.jsonl, OUT/init_from.json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/NAME.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder (checkpoints, metrics.jsonl, eval.json, config.json)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (TPU pods, clusters)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from mmpoint_jax.data.datasets import DatasetFormatError
    from mmpoint_jax.data.records import RecordError
    from mmpoint_jax.train import finetune, parallel
    from mmpoint_jax.train.checkpointing import CheckpointError

    if _DISTRIBUTED.value:
        parallel.initialize_distributed()
    try:
        summary = finetune.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (CheckpointError, DatasetFormatError, RecordError) as e:
        sys.exit(f"error: {e}")
    if summary["stopped"] == "preempted":
        print("stopped on a preemption notice; re-run the same command to resume", file=sys.stderr)
    elif summary["best"]:
        print(f"best test {summary['best']}")


if __name__ == "__main__":
    cli.run(main)
