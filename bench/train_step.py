"""DGCNN training-step throughput: forward + backward + Adam update, one JSON row per setting.

    python bench/train_step.py --batch 16 --points 1024 --k 20 --emb 1024          # factorised
    python bench/train_step.py --batch 16 --points 1024 --k 20 --emb 1024 --plain  # reference form
    python bench/train_step.py --eval --batch 64 --points 1024 --k 15  # feature extraction

The step is CrossPoint's 3D-3D step: B clouds through DGCNN (train-mode BatchNorm) and the
`inv_head` projection (2*emb -> emb -> 256), NT-Xent between the two halves of the batch (the
two augmented views), gradients, and Adam with L2 weight decay (CrossPoint's optimiser); the
train state is donated. `objects_per_s` = B / median step time. PyTorch reference on the 2-core
dev machine: 1.8 clouds/s at B=16, N=1024, k=20 (`speedup_vs_pytorch` is relative to it; it is
only printed for that shape). `--eval` times instead the eval-mode forward that
`mmpoint_jax.features` runs for the linear SVM (PyTorch reference: 4.3 clouds/s, DESIGN.md).
Peak memory: host RSS, and the accelerator's high-water mark.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.add_repo_to_path()

PYTORCH_CLOUDS_PER_S = 1.8  # CrossPoint DGCNN, B=16, N=1024, k=20, 2-core CPU (DESIGN.md)
PYTORCH_EVAL_CLOUDS_PER_S = 4.3  # eval-mode feature extraction, same machine (DESIGN.md)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="clouds per step (two views of B/2 objects)"
    )
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--emb", type=int, default=1024)
    parser.add_argument(
        "--plain", action="store_true", help="materialise the edge tensor (reference form)"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--knn", default="exact", choices=["exact", "approx"])
    parser.add_argument("--remat", action="store_true")
    parser.add_argument(
        "--eval", action="store_true", help="time eval-mode feature extraction instead"
    )
    parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS)
    parser.add_argument(
        "--no_jemalloc", action="store_true", help="keep glibc malloc (CPU only matters)"
    )
    return parser.parse_args(argv)


def encoder_config(args):
    from mmpoint_jax.models import default_point_encoder_config

    return default_point_encoder_config(
        "dgcnn",
        k=args.k,
        emb_dims=args.emb,
        edgeconv="plain" if args.plain else "factorised",
        dtype=args.dtype,
        knn_method=args.knn,
        remat=args.remat,
    )


def build_eval(args):
    """(step, variables, points): the jitted eval forward of `mmpoint_jax.features`."""
    import jax
    import jax.numpy as jnp

    from mmpoint_jax import features
    from mmpoint_jax.models import build_point_encoder

    cfg = encoder_config(args)
    points = jax.random.normal(jax.random.PRNGKey(0), (args.batch, args.points, 3), jnp.float32)
    variables = jax.jit(
        lambda p: build_point_encoder(cfg).init(jax.random.PRNGKey(1), p, train=False)
    )(points)
    return features.make_encode_fn(cfg), variables, points


def build_step(args):
    import jax
    import jax.numpy as jnp
    import optax

    from mmpoint_jax import losses
    from mmpoint_jax.models import ProjectionHead, build_point_encoder

    cfg = encoder_config(args)
    encoder, head = build_point_encoder(cfg), ProjectionHead(args.emb, 256)
    optimiser = optax.chain(optax.add_decayed_weights(1e-6), optax.adam(1e-3))

    def init(key, points):
        enc = encoder.init(key, points, train=False)
        features, _ = encoder.apply(enc, points, train=False)
        hd = head.init(key, features, train=False)
        variables = {
            "params": {"encoder": enc["params"], "head": hd["params"]},
            "batch_stats": {"encoder": enc["batch_stats"], "head": hd["batch_stats"]},
        }
        return variables, optimiser.init(variables["params"])

    def loss_fn(params, batch_stats, points):
        (features, _), enc_stats = encoder.apply(
            {"params": params["encoder"], "batch_stats": batch_stats["encoder"]},
            points,
            train=True,
            mutable=["batch_stats"],
        )
        z, head_stats = head.apply(
            {"params": params["head"], "batch_stats": batch_stats["head"]},
            features,
            train=True,
            mutable=["batch_stats"],
        )
        half = z.shape[0] // 2
        loss = losses.nt_xent(z[:half], z[half:], 0.1)
        return loss, {"encoder": enc_stats["batch_stats"], "head": head_stats["batch_stats"]}

    def step(variables, opt_state, points):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"], variables["batch_stats"], points
        )
        updates, opt_state = optimiser.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], updates)
        return {"params": params, "batch_stats": batch_stats}, opt_state, loss

    points = jax.random.normal(jax.random.PRNGKey(0), (args.batch, args.points, 3), jnp.float32)
    variables, opt_state = jax.jit(init)(jax.random.PRNGKey(1), points)
    return jax.jit(step, donate_argnums=(0, 1)), variables, opt_state, points


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.no_jemalloc:
        from mmpoint_jax.cli import maybe_reexec_with_jemalloc

        maybe_reexec_with_jemalloc()
    import jax

    if args.eval:
        encode, variables, points = build_eval(args)

        def one_step():
            jax.block_until_ready(encode(variables, points))

    else:
        step, variables, opt_state, points = build_step(args)
        state = {"variables": variables, "opt_state": opt_state}

        def one_step():
            variables, opt_state, loss = step(state["variables"], state["opt_state"], points)
            state.update(variables=variables, opt_state=opt_state)
            jax.block_until_ready(loss)

    start = time.perf_counter()
    one_step()  # compiles
    compile_s = time.perf_counter() - start
    times = common.time_repeats(one_step, repeats=args.repeats, warmup=1)
    config = {
        "batch": args.batch,
        "points": args.points,
        "k": args.k,
        "emb": args.emb,
        "edgeconv": "plain" if args.plain else "factorised",
        "dtype": args.dtype,
        "knn": args.knn,
        "remat": args.remat,
        "mode": "eval" if args.eval else "train",
        "jemalloc": "jemalloc" in os.environ.get("LD_PRELOAD", ""),
        "device": common.device_description(),
    }
    result = common.row(
        "dgcnn_eval_features" if args.eval else "dgcnn_train_step",
        config,
        times,
        objects=args.batch,
        compile_s=round(compile_s, 2),
        device_peak_mb=common.device_peak_memory_mb(),
    )
    on_cpu = jax.devices()[0].platform == "cpu"
    if args.eval and on_cpu:
        result["speedup_vs_pytorch"] = round(result["objects_per_s"] / PYTORCH_EVAL_CLOUDS_PER_S, 2)
    elif (args.points, args.k, args.emb) == (1024, 20, 1024) and on_cpu:
        result["speedup_vs_pytorch"] = round(result["objects_per_s"] / PYTORCH_CLOUDS_PER_S, 2)
    common.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
