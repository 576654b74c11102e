"""Fine-tuning step throughput (forward + backward + SGD, augmentation on device), one JSON row
per task, at the recipes' shapes unless overridden.

    python bench/finetune.py                                   # all three, recipe shapes
    python bench/finetune.py --task classification --batch 16  # the PyTorch reference's shape
    python bench/finetune.py --task partseg --batch 8 --points 512 --k 20

Recipe shapes (DATA_FORMATS.md B3-B5): classification B=32, N=1024, k=20; part seg B=8,
N=2048, k=40 (spatial transformer on); sem seg B=32, N=4096 blocks of 9 channels, k=20; DGCNN
emb 1024. The step is the one `mmpoint_jax.train.finetune` jits (state donated, random data of
the task's layout, one device). `objects_per_s` = B / median step time; for classification at
B=16, N=1024, k=20 it compares with the PyTorch DGCNN training step on the 2-core dev machine
(1.8 clouds/s, DESIGN.md), which has no classifier head and is therefore slightly cheaper.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.add_repo_to_path()

PYTORCH_CLOUDS_PER_S = 1.8  # CrossPoint DGCNN step, B=16, N=1024, k=20, 2-core CPU
RECIPES = {
    "classification": dict(batch=32, points=1024, k=20, channels=3, classes=40),
    "partseg": dict(batch=8, points=2048, k=40, channels=3, classes=50),
    "semseg": dict(batch=32, points=4096, k=20, channels=9, classes=13),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--batch", type=int, help="override the recipe's batch size")
    parser.add_argument("--points", type=int, help="override the recipe's point count")
    parser.add_argument("--k", type=int, help="override the recipe's neighbour count")
    parser.add_argument("--emb", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS)
    return parser.parse_args(argv)


def shape_of(task: str, args) -> dict:
    shape = dict(RECIPES[task])
    for field in ("batch", "points", "k"):
        if getattr(args, field) is not None:
            shape[field] = getattr(args, field)
    return shape


def build_step(task: str, shape: dict, args):
    """(jitted step, state, batch) for one task at `shape` on the first device."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mmpoint_jax import config_lib
    from mmpoint_jax.train import finetune, finetune_data, optim

    config_file = {"classification": "cls", "partseg": "partseg", "semseg": "semseg"}[task]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = config_lib.load_config(os.path.join(repo, f"configs/finetune_{config_file}.py"))
    config.model.point_encoder.update(k=shape["k"], emb_dims=args.emb, dtype=args.dtype)
    rng = np.random.default_rng(0)
    batch, points = shape["batch"], shape["points"]
    arrays = {
        "points": rng.normal(size=(batch, points, shape["channels"])).astype(np.float32),
        "label": rng.integers(
            0, shape["classes"], (batch,) if task == "classification" else (batch, points)
        ),
        "index": np.arange(batch, dtype=np.int32),
    }
    arrays["label"] = arrays["label"].astype(np.int32)
    categories = ()
    if task == "partseg":
        arrays["category"] = np.zeros((batch,), np.int32)  # category 0 owns parts 0-3
        arrays["label"] %= 4
        categories = tuple(f"c{i}" for i in range(16))
    data = finetune_data.TaskData(
        {k: v for k, v in arrays.items() if k != "index"},
        {},
        tuple(str(c) for c in range(shape["classes"])),
        category_names=categories,
    )
    model = finetune.build_model(config, data)
    tx, schedule = optim.make_optimizer(config.optim, config.schedule, 1000)
    state = jax.jit(finetune.make_create_state(model, tx, config, data))(jax.random.key(0))
    step = jax.jit(finetune.make_train_step(model, tx, schedule, config), donate_argnums=(0,))
    return step, state, {k: jnp.asarray(v) for k, v in arrays.items()}


def measure(task: str, args) -> dict:
    import jax

    shape = shape_of(task, args)
    step, state, batch = build_step(task, shape, args)
    holder = {"state": state}

    def run_once():
        holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics["train/loss"])

    times = common.time_repeats(run_once, repeats=args.repeats, warmup=1)
    extra = {}
    if task == "classification" and (shape["batch"], shape["points"], shape["k"]) == (16, 1024, 20):
        median = sorted(times)[len(times) // 2]
        extra["speedup_vs_pytorch"] = shape["batch"] / median / PYTORCH_CLOUDS_PER_S
    config = {**shape, "emb": args.emb, "dtype": args.dtype, "device": common.device_description()}
    return common.row(
        f"finetune_step/{task}",
        config,
        times,
        objects=shape["batch"],
        device_peak_mb=common.device_peak_memory_mb(),
        **extra,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    for task in list(RECIPES) if args.task == "all" else [args.task]:
        common.emit(measure(task, args))


if __name__ == "__main__":
    main()
