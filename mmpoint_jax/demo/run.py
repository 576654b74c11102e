"""The demo pipeline: data -> pretraining (MM-Point and CrossPoint modes) -> linear SVM -> report.

Every stage reuses what an earlier run left in the output folder: the render stage resumes its
shards, pretraining resumes from its checkpoints (a finished run is not redone), so a second
`make demo` only re-evaluates and rewrites the report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mmpoint_jax import run_log

MODES = ("mmpoint", "crosspoint")


def pretrain_config(
    config: ml_collections.ConfigDict, mode: str, seed: int, pool: Path, labelled: Path
):
    """The pretraining config of one demo run; both modes differ only in mode and views."""
    from mmpoint_jax.train.pretrain_config import base_config

    p = config.pretrain
    num_views = p.num_views if mode == "mmpoint" else 1
    run = base_config(mode=mode, num_views=num_views)
    run.seed = seed
    run.data.update(
        records=str(pool), num_points=p.num_points, image_size=config.data.image_size, num_workers=0
    )
    run.model.point_encoder.update(k=p.k, emb_dims=p.emb_dims)
    run.model.image_encoder.update(name=p.image_encoder, width=p.image_width)
    # Head widths keep the references' ratios to the encoder width (2048-d feature, hidden 1024):
    # MM-Point 512 (3D-3D) and 128 (views), CrossPoint 256; image heads hidden 512.
    run.model.point_head_hidden = p.emb_dims
    run.model.image_head_hidden = max(p.emb_dims // 2, 8)
    run.model.head_dims = (
        (p.emb_dims // 2, p.emb_dims // 8) if mode == "mmpoint" else (p.emb_dims // 4,)
    )
    run.optim.lr = p.lr
    run.train.update(
        batch_size=p.batch_size, num_steps=p.num_steps, log_every_steps=p.log_every_steps
    )
    run.ckpt.every_steps = p.ckpt_every_steps
    run.evals.svm.update(
        every_steps=p.eval_every_steps,
        records=str(labelled),
        num_points=p.num_points,
        C_candidates=tuple(config.eval.C_candidates),
        batch_size=config.eval.batch_size,
    )
    return run


def make_data(config: ml_collections.ConfigDict, out: Path) -> dict[str, Any]:
    """The unlabelled pool (with views) and the labelled train/test sets (points only)."""
    from mmpoint_jax.data import procedural

    d = config.data
    pool = procedural.ensure_records(
        out / "records" / "pool",
        splits={"train": (d.pool_per_class, d.pool_seed)},
        views=d.views,
        image_size=d.image_size,
        points=d.points,
        workers=d.render_workers,
        preview=config.report.preview_objects,
    )
    labelled = procedural.ensure_records(
        out / "records" / "labelled",
        splits={
            "train": (d.train_per_class, d.train_seed),
            "test": (d.test_per_class, d.test_seed),
        },
        views=0,
        image_size=d.image_size,
        points=d.points,
        workers=d.render_workers,
    )
    return {"pool": pool, "labelled": labelled}


def pose_about_up_axis(points: np.ndarray, seed: int) -> np.ndarray:
    """Each cloud turned by its own random angle about +Y (the up axis), seeded.

    The procedural objects are generated upright and facing one way, as ShapeNet and ModelNet40
    models are; real scans (ScanObjectNN) are not. On canonical poses a random-init DGCNN
    already separates the procedural categories well (its features see absolute directions),
    so the demo's headline test set poses the labelled objects at random about the up axis:
    the invariance pretraining's rotation augmentation teaches is then part of what the linear
    probe measures. The canonical-pose numbers are reported beside it. [M, N, 3] -> [M, N, 3].
    """
    angles = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, size=len(points))
    cos, sin = np.cos(angles), np.sin(angles)
    rotations = np.zeros((len(points), 3, 3), np.float64)
    rotations[:, 0, 0], rotations[:, 0, 2] = cos, sin
    rotations[:, 1, 1] = 1.0
    rotations[:, 2, 0], rotations[:, 2, 2] = -sin, cos
    return np.einsum("mij,mnj->mni", rotations, points).astype(np.float32)


def svm_accuracy(encoder_cfg, variables, sets, config) -> dict[str, Any]:
    """Linear SVM on the labelled set with an encoder's eval-mode global features."""
    from mmpoint_jax import features
    from mmpoint_jax.evaluate import svm

    feats = {
        split: features.extract_features(
            encoder_cfg, variables, sets[split][0], batch_size=config.eval.batch_size
        )
        for split in ("train", "test")
    }
    result = svm.linear_svm_eval(
        feats["train"],
        sets["train"][1],
        feats["test"],
        sets["test"][1],
        C_candidates=tuple(config.eval.C_candidates),
    )
    return {
        "accuracy": float(result["accuracy"]),
        "mean_class_accuracy": float(result["mean_class_accuracy"]),
        "C": result["C"],
        "test_features": feats["test"],
    }


def run_demo(config: ml_collections.ConfigDict, out_dir: str, seeds: int = 1) -> dict[str, Any]:
    """Runs everything and writes the report; returns report.json's content."""
    from mmpoint_jax.data import pipeline
    from mmpoint_jax.demo import report
    from mmpoint_jax.evaluate import bn_reestimate
    from mmpoint_jax.train import checkpointing, pretrain

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    run_log.write_config(out, config)
    timings: dict[str, float] = {}

    run_log.log("demo 1/4: procedural shapes and the render stage")
    start = time.perf_counter()
    data_summary = make_data(config, out)
    timings["data_s"] = time.perf_counter() - start
    pool, labelled = out / "records" / "pool", out / "records" / "labelled"

    run_log.log("demo 2/4: pretraining, MM-Point and CrossPoint modes")
    runs: dict[tuple[str, int], Path] = {}
    for seed in range(seeds):
        for mode in MODES:
            workdir = out / "runs" / f"{mode}_seed{seed}"
            start = time.perf_counter()
            pretrain.train_and_evaluate(
                pretrain_config(config, mode, seed, pool, labelled), str(workdir)
            )
            timings[f"pretrain_{mode}_seed{seed}_s"] = time.perf_counter() - start
            runs[(mode, seed)] = workdir

    run_log.log("demo 3/4: linear SVM on the labelled set (random init, CrossPoint, MM-Point)")
    start = time.perf_counter()
    num_points = config.pretrain.num_points
    aligned = {}
    for split in ("train", "test"):
        points, labels, class_names = pipeline.load_labelled_points(labelled, split, num_points)
        aligned[split] = (points, labels)
    posed = {
        split: (pose_about_up_axis(points, config.data.pose_seed + i), labels)
        for i, (split, (points, labels)) in enumerate(aligned.items())
    }
    test_sets = {"posed": posed, "aligned": aligned}  # the first is the headline
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"random": [], "crosspoint": [], "mmpoint": []} for name in test_sets
    }
    for seed in range(seeds):
        encoder_cfg = pretrain_config(config, "mmpoint", seed, pool, labelled).model.point_encoder
        encoders = {
            "random": None,
            **{m: checkpointing.restore_encoder(runs[(m, seed)]) for m in MODES},
        }
        for name, sets in test_sets.items():
            for key, encoder in encoders.items():
                if encoder is None:  # BN statistics re-estimated on this test set's train split
                    model_cfg = encoder_cfg
                    variables = bn_reestimate.random_init_encoder(
                        encoder_cfg, sets["train"][0], seed=seed
                    )
                else:
                    model_cfg, variables = encoder.model, encoder.variables
                results[name][key].append(svm_accuracy(model_cfg, variables, sets, config))
    timings["evaluate_s"] = time.perf_counter() - start

    run_log.log("demo 4/4: report")
    start = time.perf_counter()
    content = report.write_report(
        out,
        config=config,
        results=results,
        runs=runs,
        test_labels=aligned["test"][1],
        class_names=class_names,
        timings=timings,
        data_summary=data_summary,
    )
    timings["report_s"] = time.perf_counter() - start
    run_log.log(f"demo done: {report.headline(content)}")
    return content
