"""`make demo`: procedural shapes -> render -> pretrain (MM-Point and CrossPoint modes) -> linear
SVM -> demo_out/report.md. See configs/demo.py for what runs and how it is sized.

  python launch/demo.py --out=demo_out --seeds=1
  python launch/demo.py --config=configs/demo.py:runlocal --out=/tmp/demo
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmpoint_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(ROOT, "configs", "demo.py"), "configs/demo.py[:arg]", lock_config=True
)
_OUT = flags.DEFINE_string("out", "demo_out", "Output folder (records, runs, report).")
_SEEDS = flags.DEFINE_integer(
    "seeds", 1, "Pretraining and evaluation are repeated over this many seeds."
)


def main(argv):
    del argv
    from mmpoint_jax.demo.run import run_demo

    if _SEEDS.value < 1:
        sys.exit("error: --seeds must be >= 1")
    content = run_demo(_CONFIG.value, _OUT.value, _SEEDS.value)
    report = os.path.join(_OUT.value, "report.md")
    print(f"\n{chr(10).join(content['verdicts'])}\nreport: {report}")


if __name__ == "__main__":
    cli.run(main)
