"""Speed of the full pretraining step (augmentation on device, both towers, all heads, loss, Adam).

  python bench/pretrain.py                      # tiny and paper scale, MM-Point (m=3) and CrossPoint
  python bench/pretrain.py --scale=tiny --mode=mmpoint --batch=32
  python bench/pretrain.py --scale=paper --mode=mmpoint --conv_impl=xla   # without the conv matmuls

Scales (the PyTorch reference on this 2-core machine, DESIGN.md / issue 6):
  tiny   32 objects, N512, k10, emb 256, ResNet-18 at 64 px, 3 views        3.4 objects/s
  paper  8 objects, N2048, k20, emb 1024, ResNet-50 at 224, 3 views (mmpoint) 0.33 objects/s
         1 view (crosspoint)                                                 0.45 objects/s
One JSON row per (scale, mode): median step time over >= 5 steps after warm-up, objects/s,
compile seconds, peak host RSS and, on accelerators, peak device memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.add_repo_to_path()

REFERENCE = {("tiny", "mmpoint"): 3.4, ("paper", "mmpoint"): 0.33, ("paper", "crosspoint"): 0.45}
CONFIGS = {"tiny": "configs/pretrain_tiny.py", "paper": "configs/pretrain_shapenet.py"}
DEFAULT_BATCH = {"tiny": 32, "paper": 8}


def load(scale: str, mode: str, batch: int, conv_impl: str = "auto"):
    from mmpoint_jax import config_lib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(
        root,
        CONFIGS[scale]
        if mode == "mmpoint" or scale == "tiny"
        else "configs/pretrain_crosspoint.py",
    )
    spec = f"{path}:mode={mode}" if scale == "tiny" else path
    config = config_lib.load_config(spec)
    config.train.batch_size = batch
    config.model.image_encoder.conv_impl = conv_impl
    if scale == "paper" and mode == "crosspoint":
        config.model.point_encoder.k = 20  # the reference step ran k 20 in both modes
    return config


def random_batch(config, batch: int, mesh):
    import numpy as np

    from mmpoint_jax.train import parallel

    rng = np.random.default_rng(0)
    size = config.data.image_size
    local = {
        "points": rng.normal(size=(batch, config.data.num_points, 3)).astype(np.float32),
        "views": rng.integers(
            0, 256, size=(batch, config.model.num_views, size, size, 3), dtype=np.uint8
        ),
        "index": np.arange(batch, dtype=np.int32),
    }
    return parallel.global_batch(local, mesh)


def measure(scale: str, mode: str, batch: int, repeats: int, conv_impl: str = "auto") -> dict:
    import jax

    from mmpoint_jax.models import MMPoint
    from mmpoint_jax.train import optim, parallel, pretrain

    config = load(scale, mode, batch, conv_impl)
    mesh = parallel.make_mesh()
    model = MMPoint(config.model)
    tx, schedule = optim.make_optimizer(config.optim, config.schedule, config.train.num_steps)
    create_state = pretrain.make_create_state(model, tx, config)
    replicated = parallel.replicated(mesh)
    state = jax.jit(create_state, out_shardings=replicated)(jax.random.key(0))
    names = ["loss/total", "loss/intra", "loss/inter"]
    step = jax.jit(
        pretrain.make_train_step(model, tx, schedule, config, names, mesh), donate_argnums=(0,)
    )
    batch_arrays = random_batch(config, batch, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], batch_arrays)
        jax.block_until_ready(metrics)

    times = common.time_repeats(one_step, repeats=repeats, warmup=1)
    reference = REFERENCE.get((scale, mode))
    result = common.row(
        "pretrain_step",
        {
            "scale": scale,
            "mode": mode,
            "batch": batch,
            "points": config.data.num_points,
            "k": config.model.point_encoder.k,
            "emb_dims": config.model.point_encoder.emb_dims,
            "image_encoder": config.model.image_encoder.name,
            "image_size": config.data.image_size,
            "views": config.model.num_views,
            "conv_impl": conv_impl,
            "device": common.device_description(),
        },
        times,
        objects=batch,
        steps_per_s=1.0 / sorted(times)[len(times) // 2],
        compile_s=round(compile_s, 2),
        device_peak_mb=common.device_peak_memory_mb(),
    )
    if reference:
        result["pytorch_reference_objects_per_s"] = reference
        result["speedup_vs_pytorch"] = round(result["objects_per_s"] / reference, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["tiny", "paper", "all"], default="all")
    parser.add_argument("--mode", choices=["mmpoint", "crosspoint", "all"], default="all")
    parser.add_argument("--batch", type=int, default=0, help="objects per step (default per scale)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--conv_impl",
        choices=["auto", "xla"],
        default="auto",
        help="ResNet convolutions: auto (matmuls for 1x1 and small maps) or XLA's everywhere",
    )
    args = parser.parse_args()
    scales = ["tiny", "paper"] if args.scale == "all" else [args.scale]
    modes = ["mmpoint", "crosspoint"] if args.mode == "all" else [args.mode]
    for scale in scales:
        for mode in modes:
            if (scale, mode) not in REFERENCE and args.mode == "all":
                continue  # no reference to compare with
            common.emit(
                measure(
                    scale, mode, args.batch or DEFAULT_BATCH[scale], args.repeats, args.conv_impl
                )
            )


if __name__ == "__main__":
    main()
