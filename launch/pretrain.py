"""MM-Point / CrossPoint pretraining entry point (the same command on every host of a pod).

  python launch/pretrain.py --config=configs/pretrain_tiny.py --workdir=workdirs/tiny
  python launch/pretrain.py --config=configs/pretrain_shapenet.py \
      --config.data.records=/data/shapenet_records --workdir=gs://bucket/mmpoint/run1

Several CPU processes on one machine: `launch/local_multiprocess.sh N ...` (adds the
--coordinator/--num_processes/--process_id flags). On Cloud TPU pods `jax.distributed` needs no
flags (`--distributed` turns it on). Re-running the same command resumes from the latest checkpoint.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/NAME.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder (checkpoints, metrics.jsonl, config.json)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (TPU pods, clusters)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0 (multi-process without a cluster)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count (with --coordinator).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from mmpoint_jax.train import parallel, pretrain

    if _COORDINATOR.value or _DISTRIBUTED.value:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    summary = pretrain.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if summary.get("stopped") == "preempted":
        print(
            "stopped on a preemption notice after saving; re-run the same command to resume",
            file=sys.stderr,
        )


if __name__ == "__main__":
    cli.run(main)
