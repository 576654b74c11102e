"""MM-Point / CrossPoint pretraining: one function, in the order it runs (STYLE.md).

logging -> mesh -> data -> model and optimiser shapes -> shardings and step -> restore ->
evaluators -> loop. Every process runs all of it (all collectives, saves and restores); only
logging is gated on process 0. Each section opens with a progress note so a hang on a pod is
easy to place.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mmpoint_jax import config_lib, losses, run_log
from mmpoint_jax.augment import images as image_aug
from mmpoint_jax.augment import keys as aug_keys
from mmpoint_jax.augment import points as point_aug
from mmpoint_jax.train import checkpointing, loop_lib, optim, parallel
from mmpoint_jax.train import state as state_lib

MODES = ("mmpoint", "crosspoint")
NonFiniteLossError = loop_lib.NonFiniteLossError


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks values whose errors would otherwise surface deep inside jit."""
    config_lib.check_choice(config, "model.mode", MODES)
    config_lib.check_positive(config, "train.batch_size")
    config_lib.check_positive(config, "model.num_views")
    config_lib.check_positive(config, "data.num_points")
    config_lib.check_positive(config, "loss.tau")
    if config.model.mode == "crosspoint" and config.model.num_views != 1:
        raise config_lib.ConfigError(
            f"config field 'model.num_views' = {config.model.num_views}; crosspoint mode uses 1 view"
        )
    if not config.data.records:
        raise config_lib.ConfigError(
            "config field 'data.records' is empty: point it at a render-stage output folder"
        )


# ---------------------------------------------------------------------------------------------
# The train step.


def _augment_batch(batch: dict[str, jax.Array], step: jax.Array, config: ml_collections.ConfigDict):
    """Two augmented clouds and the laddered views, from keys of (seed, step, global index)."""
    keys = aug_keys.example_keys(config.seed, step, batch["index"])  # [B, 2]
    points_cfg = config.augment.points
    points1 = point_aug.augment_points(
        batch["points"], aug_keys.stream_keys(keys, aug_keys.POINTS_FIRST), points_cfg
    )
    points2 = point_aug.augment_points(
        batch["points"], aug_keys.stream_keys(keys, aug_keys.POINTS_SECOND), points_cfg
    )
    views = image_aug.augment_views(
        batch["views"],
        aug_keys.stream_keys(keys, aug_keys.IMAGES),
        config.augment.images,
        config.data.image_size,
    )
    return points1, points2, views


def make_loss(config: ml_collections.ConfigDict, mesh):
    """The contrastive loss over the global batch: shard_map'ed (each device's rows against the
    all-gathered embeddings) when `loss.sharded`, else left to XLA's partitioner."""
    if config.loss.sharded:
        return lambda outputs: losses.sharded_total_loss(
            outputs, config.loss, mesh, parallel.DATA_AXIS
        )
    return lambda outputs: losses.total_loss(outputs, config.loss)


def make_train_step(
    model, tx, schedule, config: ml_collections.ConfigDict, loss_names: list[str], mesh
):
    """The pure step: augment on device, forward both towers, loss, update; skips a non-finite update."""
    loss_of = make_loss(config, mesh)

    def loss_fn(params, batch_stats, points1, points2, views):
        outputs, mutated = model.apply(
            {"params": params, "batch_stats": batch_stats},
            points1,
            points2,
            views,
            train=True,
            mutable=["batch_stats"],
        )
        loss, metrics = loss_of(outputs)
        return loss, (metrics, mutated["batch_stats"])

    def train_step(state: state_lib.TrainState, batch: dict[str, jax.Array]):
        points1, points2, views = _augment_batch(batch, state.step, config)
        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, points1, points2, views
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        new_state = loop_lib.guarded_update(
            state, params, batch_stats, opt_state, metrics, grad_norm, loss_names
        )
        metrics = dict(metrics)
        metrics["train/grad_norm"] = grad_norm
        metrics["train/lr"] = schedule(state.step)
        return new_state, metrics

    return train_step


# ---------------------------------------------------------------------------------------------
# Helpers of the loop.


def _loss_term_names(model, variables, config, sample) -> list[str]:
    """The sorted loss-metric names the step returns (decides the non-finite bitmask layout)."""
    points = sample["points"][:2]
    views = sample["views"][:2]

    def names(variables, points, views):
        outputs = model.apply(variables, points, points, views, train=False)
        return losses.total_loss(outputs, config.loss)[1]

    shapes = jax.eval_shape(names, variables, points, views)
    return sorted(name for name in shapes if name.startswith("loss/"))


def _abstract_batch(
    config: ml_collections.ConfigDict, batch_size: int
) -> dict[str, jax.ShapeDtypeStruct]:
    size = config.data.image_size
    return {
        "points": jax.ShapeDtypeStruct((batch_size, config.data.num_points, 3), jnp.float32),
        "views": jax.ShapeDtypeStruct(
            (batch_size, config.model.num_views, size, size, 3), jnp.uint8
        ),
        "index": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }


def _model_input_views(config, batch_size):
    size = config.data.image_size
    return jnp.zeros((batch_size, config.model.num_views, size, size, 3), jnp.float32)


def make_create_state(model, tx, config: ml_collections.ConfigDict):
    """`key -> TrainState` with freshly initialised variables (jit it with out_shardings)."""
    init_batch = 2

    def create_state(key):
        points = jnp.zeros((init_batch, config.data.num_points, 3), jnp.float32)
        variables = model.init(
            key, points, points, _model_input_views(config, init_batch), train=False
        )
        params = variables["params"]
        return state_lib.create(params, variables.get("batch_stats", {}), tx.init(params))

    return create_state


def ensure_procedural_records(config: ml_collections.ConfigDict) -> None:
    """Renders the procedural shapes into `data.records` when a config asks for them
    (`data.procedural`) and the folder holds no render yet. Process 0 renders, the others wait."""
    from mmpoint_jax.data import pipeline as pipeline_lib
    from mmpoint_jax.data import procedural

    spec = config.data.get("procedural")
    if not spec or (Path(config.data.records) / pipeline_lib.MANIFEST_FILE).exists():
        return
    if jax.process_index() == 0:
        procedural.ensure_records(
            config.data.records,
            splits={config.data.split: (spec.num_per_class, spec.seed)},
            views=spec.views,
            image_size=spec.image_size,
            points=spec.points,
            workers=spec.workers,
        )
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("procedural records ready")


def _merge_init(fresh: dict, loaded: dict, where: str = "") -> tuple[dict, list[str]]:
    """Replaces the leaves of `fresh` found in `loaded` (same path, same shape)."""
    used = []
    out = dict(fresh)
    for key, value in loaded.items():
        path = f"{where}/{key}" if where else key
        if key not in fresh:
            continue
        if isinstance(value, dict) and isinstance(fresh[key], dict):
            out[key], sub = _merge_init(fresh[key], value, path)
            used += sub
        elif np.shape(value) == np.shape(fresh[key]):
            out[key] = jnp.asarray(value, dtype=jnp.asarray(fresh[key]).dtype)
            used.append(path)
        else:
            raise checkpointing.CheckpointError(
                f"init_from: '{path}' has shape {np.shape(value)}, the model expects {np.shape(fresh[key])}"
            )
    return out, used


# ---------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Pretrains until `train.num_steps` (or `num_epochs`), resuming from `workdir` if possible."""
    from mmpoint_jax.data import pipeline as pipeline_lib
    from mmpoint_jax.models import MMPoint

    # --- logging ------------------------------------------------------------------------------
    validate_config(config)
    workdir = str(Path(workdir).absolute())
    Path(workdir).mkdir(parents=True, exist_ok=True)
    run_log.log(f"pretrain [{config.model.mode}] in {workdir} on {jax.process_count()} process(es)")
    run_log.write_config(workdir, config)
    metrics_writer = run_log.MetricsWriter(workdir)

    # --- mesh ---------------------------------------------------------------------------------
    run_log.log("mesh")
    mesh = parallel.make_mesh(config.mesh.num_devices)
    global_batch_size = config.train.batch_size
    parallel.local_batch_size(global_batch_size, mesh)  # raises when it does not split

    # --- data ---------------------------------------------------------------------------------
    run_log.log(f"data from {config.data.records}")
    ensure_procedural_records(config)
    data = pipeline_lib.PretrainPipeline(
        config.data.records,
        config.data.split,
        global_batch_size=global_batch_size,
        num_views=config.model.num_views,
        image_size=config.data.image_size,
        num_points=config.data.num_points,
        seed=config.seed,
        view_selection=config.data.view_selection,
        num_workers=config.data.num_workers,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        skip_bad_records=config.data.skip_bad_records,
    )
    total_steps = config_lib.duration_steps(
        config.train, "num", data.steps_per_epoch, where="train"
    )
    if total_steps is None:
        raise config_lib.ConfigError("set 'train.num_steps' or 'train.num_epochs'")
    log_every = max(1, int(config.train.log_every_steps))

    # --- model and optimiser shapes -----------------------------------------------------------
    run_log.log("model and optimiser shapes")
    model = MMPoint(config.model)
    tx, schedule = optim.make_optimizer(config.optim, config.schedule, total_steps)
    create_state = make_create_state(model, tx, config)

    init_key = jax.random.key(config.seed)
    abstract_state = jax.eval_shape(create_state, init_key)
    sample = {
        "points": jnp.zeros((2, config.data.num_points, 3)),
        "views": _model_input_views(config, 2),
    }
    loss_names = _loss_term_names(
        model,
        {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats},
        config,
        sample,
    )

    # --- shardings and step -------------------------------------------------------------------
    run_log.log("shardings and compile")
    state_sharding = jax.tree.map(lambda _: parallel.replicated(mesh), abstract_state)
    batch_sharding = {k: parallel.batch_sharded(mesh) for k in ("points", "views", "index")}
    step_fn = make_train_step(model, tx, schedule, config, loss_names, mesh)
    traces = {"count": 0}

    def counted_step(state, batch):
        traces["count"] += 1  # runs only while tracing: counts compilations of the step
        return step_fn(state, batch)

    train_step = jax.jit(
        counted_step,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, parallel.replicated(mesh)),
        donate_argnums=(0,),
    )
    abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        abstract_state,
        state_sharding,
    )

    # --- restore ------------------------------------------------------------------------------
    ckpt = checkpointing.RunCheckpointer(
        workdir, config.ckpt.every_steps, config.ckpt.max_to_keep, use_async=config.ckpt.use_async
    )
    latest = ckpt.latest_step()
    if latest is not None:
        run_log.log(f"restore: resuming from step {latest}")
        state, data_state = ckpt.restore(latest, abstract_state)
        data.set_state(data_state)
    else:
        state = jax.jit(create_state, out_shardings=state_sharding)(init_key)
        if config.init_from:
            loaded, description = checkpointing.load_init_variables(config.init_from)
            params, used_p = _merge_init(jax.device_get(state.params), loaded.get("params", {}))
            stats, used_s = _merge_init(
                jax.device_get(state.batch_stats), loaded.get("batch_stats", {})
            )
            run_log.log(
                f"restore: warm start from {description}: {len(used_p)} params, {len(used_s)} stats"
            )
            state = jax.device_put(
                state.replace(params=params, batch_stats=stats, opt_state=tx.init(params)),
                state_sharding,
            )
        else:
            run_log.log("restore: none, starting from scratch")
    start_step = int(jax.device_get(state.step))

    # --- evaluators ---------------------------------------------------------------------------
    evaluator = _make_svm_evaluator(config, model) if config.evals.svm.every_steps else None

    # --- loop ---------------------------------------------------------------------------------
    run_log.log(f"loop: steps {start_step} -> {total_steps}")
    summary: dict[str, Any] = {
        "start_step": start_step,
        "total_steps": total_steps,
        "stopped": "completed",
    }
    window = loop_lib.MetricsWindow()
    data_iter = iter(data)
    bar = run_log.progress(total=total_steps, initial=start_step, desc="pretrain", unit="step")
    try:
        with loop_lib.PreemptionNotice() as preemption:
            for step in range(start_step, total_steps):
                local = next(data_iter)
                batch = parallel.global_batch(
                    {k: local[k] for k in ("points", "views", "index")}, mesh
                )
                state, metrics = train_step(state, batch)
                window.add(metrics)
                bar.update(1)
                done = step + 1

                if done % log_every == 0 or done == total_steps:
                    loop_lib.check_finite(state, loss_names)
                    row = window.flush(global_batch_size)
                    metrics_writer.write(done, row)
                    bar.set_postfix(loss=f"{row['loss/total']:.4f}")
                if evaluator is not None and (
                    done % config.evals.svm.every_steps == 0 or done == total_steps
                ):
                    metrics_writer.write(done, evaluator(state))
                preempted = parallel.all_processes_agree(preemption.received)
                if ckpt.should_save(done) or done == total_steps or preempted:
                    loop_lib.check_finite(state, loss_names)
                    ckpt.save(
                        done, state, data.get_state(), run_log.config_to_dict(config), force=True
                    )
                if preempted:
                    run_log.log(f"preemption notice: saved step {done}, stopping")
                    summary["stopped"] = "preempted"
                    break
    finally:  # a failing run still finishes its pending (good) checkpoint saves
        bar.close()
        ckpt.close()
        data.close()
    summary.update(final_step=int(jax.device_get(state.step)), compilations=traces["count"])
    run_log.log(f"done: {summary}")
    return summary


def _make_svm_evaluator(config: ml_collections.ConfigDict, model):
    """Linear SVM on a labelled render-stage set with the current point encoder (all processes)."""
    from mmpoint_jax import features
    from mmpoint_jax.data import pipeline as pipeline_lib
    from mmpoint_jax.evaluate import svm

    cfg = config.evals.svm
    train_points, train_labels, _ = pipeline_lib.load_labelled_points(
        cfg.records, cfg.train_split, cfg.num_points
    )
    test_points, test_labels, _ = pipeline_lib.load_labelled_points(
        cfg.records, cfg.test_split, cfg.num_points
    )

    def evaluate(state) -> dict[str, float]:
        params = jax.device_get(state.params)["point_encoder"]
        stats = jax.device_get(state.batch_stats).get("point_encoder", {})
        variables = {"params": params, "batch_stats": stats}
        extract = functools.partial(
            features.extract_features,
            config.model.point_encoder,
            variables,
            batch_size=cfg.batch_size,
        )
        result = svm.linear_svm_eval(
            extract(train_points),
            train_labels,
            extract(test_points),
            test_labels,
            C=cfg.C,
            C_candidates=tuple(cfg.C_candidates) or None,
        )
        return {
            "eval/svm/accuracy": result["accuracy"],
            "eval/svm/mean_class_accuracy": result["mean_class_accuracy"],
        }

    return evaluate
