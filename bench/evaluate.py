"""Evaluation costs, one JSON row per measurement (bench/common.py conventions).

    python bench/evaluate.py                       # features, BN re-estimation, both SVM fits
    python bench/evaluate.py --only features --clouds 128 --batch 64
    python bench/evaluate.py --only svm_gram,svm_literal

* `eval_features`: `mmpoint_jax.features.extract_features` end to end (host batches, padding,
  device transfer, eval-mode DGCNN N=1024, k=20, emb 1024, copies back) on `--clouds` random
  clouds. PyTorch reference on the 2-core dev machine: 4.3 clouds/s (DESIGN.md), i.e. 48
  minutes for ModelNet40's 12,308 clouds; `speedup_vs_pytorch` and `modelnet40_minutes` derive
  from the median.
* `bn_reestimate`: the random-init baseline's BatchNorm re-estimation (one pass per BN layer,
  each cut after its layer) on `--bn_clouds` clouds; `objects_per_s` counts clouds of the split.
* `svm_fit_gram` / `svm_fit_literal`: the linear SVM fit at ModelNet40 size (9,840 x 2,048
  features, 40 classes, C = 0.01). Literal = the papers' call `SVC(kernel='linear', C=0.01)
  .fit(X, y)` (libsvm computes every kernel value itself); gram = part 1's fast path, the same
  libsvm problem with K = X X^T precomputed by BLAS (`LinearSVM(kernel='gram')`). Features are
  random but class-structured (ReLU of a class centre plus noise, like pooled DGCNN features),
  so libsvm sees a realistic problem, not random labels; the row reports the accuracy on 2,468
  held-out random objects to show the problem is neither trivial nor hopeless.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.add_repo_to_path()

PYTORCH_EVAL_CLOUDS_PER_S = 4.3  # CrossPoint DGCNN eval features, 2-core CPU (DESIGN.md)
MODELNET40_CLOUDS = 9_840 + 2_468
MODELNET40_TRAIN, MODELNET40_TEST, MODELNET40_CLASSES = 9_840, 2_468, 40
MEASUREMENTS = ("features", "bn", "svm_gram", "svm_literal")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated subset")
    parser.add_argument("--clouds", type=int, default=256, help="clouds per features repetition")
    parser.add_argument("--bn_clouds", type=int, default=64, help="clouds per BN re-estimation")
    parser.add_argument("--batch", type=int, default=64, help="configs/svm.py default")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--emb", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=common.MIN_REPEATS)
    parser.add_argument("--signal", type=float, default=0.12, help="class-centre scale (SVM)")
    parser.add_argument(
        "--no_jemalloc", action="store_true", help="keep glibc malloc (CPU only matters)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurements {sorted(unknown)}; known: {list(MEASUREMENTS)}")
    return args


def encoder_setup(args, num_clouds: int):
    """(model config, random-init variables, random clouds [num_clouds, N, 3])."""
    import numpy as np

    from mmpoint_jax.evaluate import bn_reestimate
    from mmpoint_jax.models import default_point_encoder_config

    cfg = default_point_encoder_config("dgcnn", k=args.k, emb_dims=args.emb, dtype=args.dtype)
    variables = bn_reestimate.init_encoder_variables(cfg, args.points, seed=0)
    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(num_clouds, args.points, 3)).astype(np.float32)
    return cfg, variables, clouds


def encoder_config_row(args) -> dict:
    return {
        "points": args.points,
        "k": args.k,
        "emb_dims": args.emb,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": common.device_description(),
        "jemalloc": "jemalloc" in os.environ.get("LD_PRELOAD", ""),
    }


def bench_features(args) -> dict:
    from mmpoint_jax import features

    cfg, variables, clouds = encoder_setup(args, args.clouds)
    times = common.time_repeats(
        lambda: features.extract_features(cfg, variables, clouds, args.batch), args.repeats
    )
    result = common.row(
        "eval_features",
        {**encoder_config_row(args), "clouds": args.clouds},
        times,
        objects=args.clouds,
        device_peak_mb=common.device_peak_memory_mb(),
    )
    result["speedup_vs_pytorch"] = result["objects_per_s"] / PYTORCH_EVAL_CLOUDS_PER_S
    result["modelnet40_minutes"] = MODELNET40_CLOUDS / result["objects_per_s"] / 60
    return result


def bench_bn(args) -> dict:
    from mmpoint_jax.evaluate import bn_reestimate

    cfg, variables, clouds = encoder_setup(args, args.bn_clouds)
    times = common.time_repeats(
        lambda: bn_reestimate.reestimate_batch_stats(cfg, variables, clouds, args.batch),
        args.repeats,
    )
    result = common.row(
        "bn_reestimate",
        {**encoder_config_row(args), "clouds": args.bn_clouds},
        times,
        objects=args.bn_clouds,
    )
    result["modelnet40_train_minutes"] = MODELNET40_TRAIN / result["objects_per_s"] / 60
    return result


def svm_problem(signal: float, seed: int = 0):
    """Class-structured random features at ModelNet40 size: (train X, y, test X, y)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dim = 2048
    centres = rng.normal(size=(MODELNET40_CLASSES, dim)) * signal

    def draw(count):
        labels = rng.integers(0, MODELNET40_CLASSES, size=count)
        feats = np.maximum(centres[labels] + rng.normal(size=(count, dim)), 0.0)
        return feats.astype(np.float32), labels

    return (*draw(MODELNET40_TRAIN), *draw(MODELNET40_TEST))


def bench_svm(args, kernel: str) -> dict:
    import numpy as np

    from mmpoint_jax.evaluate.svm import DEFAULT_C, LinearSVM

    train_x, train_y, test_x, test_y = svm_problem(args.signal)
    train64, test64 = train_x.astype(np.float64), test_x.astype(np.float64)
    fitted = {}

    def fit():
        fitted["model"] = LinearSVM(DEFAULT_C, kernel=kernel).fit(train64, train_y)

    # warmup=0: one libsvm fit is minutes for the literal call, and nothing needs warming
    times = common.time_repeats(fit, args.repeats, warmup=0)
    start = time.perf_counter()
    accuracy = float(np.mean(fitted["model"].predict(test64) == test_y))
    call = (
        "SVC(kernel='linear', C=0.01).fit(X, y)"
        if kernel == "linear"
        else "SVC(kernel='precomputed', C=0.01).fit(X @ X.T, y)"
    )
    return common.row(
        f"svm_fit_{kernel if kernel == 'linear' else 'gram'}",
        {
            "train": MODELNET40_TRAIN,
            "dim": train_x.shape[1],
            "classes": MODELNET40_CLASSES,
            "C": DEFAULT_C,
            "call": call,
            "signal": args.signal,
        },
        times,
        objects=MODELNET40_TRAIN,
        test_accuracy=accuracy,
        predict_s=time.perf_counter() - start,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.no_jemalloc:  # as launch/evaluate.py runs (cli.run preloads it when present)
        from mmpoint_jax.cli import maybe_reexec_with_jemalloc

        maybe_reexec_with_jemalloc()
    chosen = args.only.split(",")
    if "features" in chosen:
        common.emit(bench_features(args))
    if "bn" in chosen:
        common.emit(bench_bn(args))
    if "svm_gram" in chosen:
        common.emit(bench_svm(args, "gram"))
    if "svm_literal" in chosen:
        common.emit(bench_svm(args, "linear"))


if __name__ == "__main__":
    main()
