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
    sets = {}
    for split in ("train", "test"):
        points, labels, class_names = pipeline.load_labelled_points(labelled, split, num_points)
        sets[split] = (points, labels)
    results: dict[str, list[dict[str, Any]]] = {"random": [], "crosspoint": [], "mmpoint": []}
    for seed in range(seeds):
        encoder_cfg = pretrain_config(config, "mmpoint", seed, pool, labelled).model.point_encoder
        variables = bn_reestimate.random_init_encoder(encoder_cfg, sets["train"][0], seed=seed)
        results["random"].append(svm_accuracy(encoder_cfg, variables, sets, config))
        for mode in MODES:
            encoder = checkpointing.restore_encoder(runs[(mode, seed)])
            results[mode].append(svm_accuracy(encoder.model, encoder.variables, sets, config))
    timings["evaluate_s"] = time.perf_counter() - start

    run_log.log("demo 4/4: report")
    start = time.perf_counter()
    content = report.write_report(
        out,
        config=config,
        results=results,
        runs=runs,
        test_labels=sets["test"][1],
        class_names=class_names,
        timings=timings,
        data_summary=data_summary,
    )
    timings["report_s"] = time.perf_counter() - start
    run_log.log(f"demo done: {report.headline(content)}")
    return content
