"""Fine-tuning a (pretrained) point encoder: classification, part segmentation, semantic segmentation.

One loop for the three tasks, in the order it runs (STYLE.md): logging -> data -> mesh -> model
and optimiser shapes -> shardings and steps -> restore -> evaluator -> loop. The tasks differ in
their data (`finetune_data.py`), network (`models/classifier.py`, `models/segmentation.py`), the
network's extra input (the category of each shape, part seg only) and their metrics (the
evaluators below); the step is shared: augmentation on device from per-example keys, DGCNN's
label-smoothed cross-entropy over every labelled entry (objects or points), SGD by default.

Restore order: this workdir's latest checkpoint (exact resume: state, data position, the
best-so-far from eval.json), else `init_from` (only the encoder: params and batch statistics of
`point_encoder`; what is loaded and what is left fresh, by name and why, is logged and written to
`init_from.json`), else scratch. The encoder's structural fields (name, emb_dims, widths) come
from the checkpoint being loaded, its runtime fields (k, dtype, ...) from the config.

Outputs in the workdir: config.json (resolved), metrics.jsonl (train/..., eval/...), eval.json
(latest test metrics at the top level, the best so far under `best`), checkpoints/.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path
from typing import Any

import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mmpoint_jax import config_lib, io_utils, run_log
from mmpoint_jax.augment import keys as aug_keys
from mmpoint_jax.data import pipeline
from mmpoint_jax.data.datasets import shapenetpart
from mmpoint_jax.evaluate import metrics
from mmpoint_jax.models import default_point_encoder_config
from mmpoint_jax.models.classifier import PointCloudClassifier
from mmpoint_jax.models.segmentation import part_segmentation_net, semantic_segmentation_net
from mmpoint_jax.train import checkpointing, finetune_data, loop_lib, optim, parallel
from mmpoint_jax.train import state as state_lib
from mmpoint_jax.train.finetune_config import PART_ARGMAX
from mmpoint_jax.train.loop_lib import NonFiniteLossError

__all__ = ["NonFiniteLossError", "train_and_evaluate"]

EVAL_FILE = "eval.json"
INIT_FILE = "init_from.json"
ENCODER = checkpointing.TOWER_SUBTREES["point"]  # "point_encoder"
COLLECTIONS = ("params", "batch_stats")
LOSS_NAMES = ["train/loss"]
# Fields of a point-encoder config that decide its variables' shapes (the rest is runtime).
STRUCTURE_FIELDS = ("emb_dims", "widths")
_DROPOUT_STREAM = 0x5EED  # folded into the root key: dropout draws apart from augmentation keys


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks values whose errors would otherwise surface deep inside jit or after the data load."""
    finetune_data.check_data_config(config)
    config_lib.check_positive(config, "train.batch_size")
    config_lib.check_positive(config, "evals.batch_size")
    config_lib.check_positive(config, "loss.label_smoothing", allow_zero=True)
    if config.loss.label_smoothing >= 1:
        raise config_lib.ConfigError(
            f"config field 'loss.label_smoothing' = {config.loss.label_smoothing}; must be < 1"
        )
    if config.task == "partseg":
        config_lib.check_choice(config, "evals.part_argmax", PART_ARGMAX)
    if config.task != "classification" and config.model.point_encoder.name != "dgcnn":
        raise config_lib.ConfigError(
            f"config field 'model.point_encoder.name' = {config.model.point_encoder.name!r}; "
            f"{config.task} needs 'dgcnn' (its per-point layer features)"
        )


# ---------------------------------------------------------------------------------------------
# Model, augmentation, loss.


def build_model(config: ml_collections.ConfigDict, data: finetune_data.TaskData):
    encoder, dropout = config.model.point_encoder, float(config.model.dropout)
    if config.task == "classification":
        hidden = tuple(config.model.classifier_hidden)
        return PointCloudClassifier(encoder, data.num_classes, hidden, dropout)
    if config.task == "partseg":
        return part_segmentation_net(
            encoder, data.num_classes, data.num_categories, config.model.transform_net, dropout
        )
    channels = tuple(int(c) for c in config.model.graph_channels)
    if channels and max(channels) >= data.num_channels:
        raise config_lib.ConfigError(
            f"config field 'model.graph_channels' = {channels}; the data has "
            f"{data.num_channels} channels"
        )
    return semantic_segmentation_net(encoder, data.num_classes, channels, dropout)


def model_args(config: ml_collections.ConfigDict, batch: dict) -> tuple:
    """What the network takes after (points, train): each shape's category for part seg."""
    return (batch["category"],) if config.task == "partseg" else ()


def augment_example(points: jax.Array, labels: jax.Array, key: jax.Array, cfg):
    """DGCNN's training augmentation of one example: points [N, C] (xyz first), labels [] or [N].

    Per-axis scale U[scale_low, scale_high] then per-axis shift U[-shift_range, shift_range] of
    the xyz channels, then a random point order (per-point labels move with their points).
    """
    scale_key, shift_key, order_key = jax.random.split(key, 3)
    xyz, rest = points[:, :3], points[:, 3:]
    if cfg.scale:
        xyz = xyz * jax.random.uniform(scale_key, (3,), xyz.dtype, cfg.scale_low, cfg.scale_high)
    if cfg.shift:
        xyz = xyz + jax.random.uniform(
            shift_key, (3,), xyz.dtype, -cfg.shift_range, cfg.shift_range
        )
    points = jnp.concatenate([xyz, rest], axis=-1)
    if cfg.shuffle:
        order = jax.random.permutation(order_key, points.shape[0])  # [N]
        points = points[order]
        labels = labels[order] if labels.ndim else labels
    return points, labels


def augment_batch(points: jax.Array, labels: jax.Array, keys: jax.Array, cfg):
    """points [B, N, C], labels [B] or [B, N], one key per example [B, 2] -> augmented copies."""
    return jax.vmap(functools.partial(augment_example, cfg=cfg))(points, labels, keys)


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """DGCNN's `cal_loss`: target 1 - eps on the true class and eps / (C - 1) on each other one
    (not optax's eps / C), averaged over every labelled entry. logits [..., C], labels [...]."""
    num_classes = logits.shape[-1]
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    target = one_hot * (1.0 - smoothing) + (1.0 - one_hot) * (smoothing / (num_classes - 1))
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.sum(target * log_probs, axis=-1))


# ---------------------------------------------------------------------------------------------
# Steps.


def make_create_state(model, tx, config: ml_collections.ConfigDict, data: finetune_data.TaskData):
    """`key -> TrainState` with freshly initialised variables (jit it with out_shardings)."""

    def create_state(key):
        sample = {k: jnp.zeros((2, *v.shape[1:]), v.dtype) for k, v in data.train.items()}
        variables = model.init(key, sample["points"], False, *model_args(config, sample))
        params = variables["params"]
        return state_lib.create(params, variables.get("batch_stats", {}), tx.init(params))

    return create_state


def make_train_step(model, tx, schedule, config: ml_collections.ConfigDict):
    """The pure step: augment on device, forward with dropout, loss, update; a non-finite loss or
    gradient freezes the state (the loop then stops with the step that went bad)."""
    smoothing = float(config.loss.label_smoothing)
    dropout_root = jax.random.fold_in(jax.random.PRNGKey(config.seed), _DROPOUT_STREAM)

    def loss_fn(params, batch_stats, points, labels, extra, dropout_key):
        logits, mutated = model.apply(
            {"params": params, "batch_stats": batch_stats},
            points,
            True,
            *extra,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        loss = smoothed_cross_entropy(logits, labels, smoothing)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return loss, (accuracy, mutated["batch_stats"])

    def train_step(state: state_lib.TrainState, batch: dict[str, jax.Array]):
        keys = aug_keys.example_keys(config.seed, state.step, batch["index"])  # [B, 2]
        points, labels = augment_batch(batch["points"], batch["label"], keys, config.augment)
        dropout_key = jax.random.fold_in(dropout_root, state.step)
        (loss, (accuracy, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params,
            state.batch_stats,
            points,
            labels,
            model_args(config, batch),
            dropout_key,
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        metrics_out = {
            "train/loss": loss,
            "train/accuracy": accuracy,
            "train/grad_norm": grad_norm,
            "train/lr": schedule(state.step),
        }
        new_state = loop_lib.guarded_update(
            state, params, batch_stats, opt_state, metrics_out, grad_norm, LOSS_NAMES
        )
        return new_state, metrics_out

    return train_step


def make_eval_step(model, config: ml_collections.ConfigDict):
    """(state, padded test batch) -> predictions with the batch's labels and mask (replicated, so
    every process sees the whole global batch). Part seg adds the category-restricted argmax."""
    part_mask = jnp.asarray(shapenetpart.category_part_mask()) if config.task == "partseg" else None

    def eval_step(state: state_lib.TrainState, batch: dict[str, jax.Array]):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        logits = model.apply(variables, batch["points"], False, *model_args(config, batch))
        out = {
            "prediction": jnp.argmax(logits, axis=-1).astype(jnp.int32),
            "label": batch["label"],
            "mask": batch["mask"],
        }
        if part_mask is not None:
            allowed = part_mask[batch["category"]][:, None, :]  # [B, 1, parts]
            restricted = jnp.where(allowed, logits, -jnp.inf)  # [B, N, parts]
            out["category_prediction"] = jnp.argmax(restricted, axis=-1).astype(jnp.int32)
            out["category"] = batch["category"]
        return out

    return eval_step


# ---------------------------------------------------------------------------------------------
# Evaluators: accumulate the masked test batches on the host, then report.


class _ConfusionEvaluator:
    """Sums a [C, C] confusion matrix over every real (unpadded) labelled entry."""

    def __init__(self, data: finetune_data.TaskData):
        self.class_names = data.class_names
        self.reset()

    def reset(self) -> None:
        size = len(self.class_names)
        self.confusion = np.zeros((size, size), np.int64)

    def add(self, out: dict[str, np.ndarray]) -> None:
        labels = out["label"]
        valid = np.broadcast_to(out["mask"].reshape(-1, *[1] * (labels.ndim - 1)), labels.shape)
        self.confusion += metrics.confusion_matrix(
            labels, out["prediction"], len(self.class_names), valid=valid
        )


class ClassificationEvaluator(_ConfusionEvaluator):
    headline = "accuracy"

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        per_class = metrics.per_class_accuracy(self.confusion)
        scalars = {
            "accuracy": metrics.accuracy_from_confusion(self.confusion),
            "mean_class_accuracy": metrics.mean_class_accuracy_from_confusion(self.confusion),
        }
        details = {"per_class_accuracy": dict(zip(self.class_names, per_class, strict=True))}
        return scalars, details


class SemSegEvaluator(_ConfusionEvaluator):
    """OA, mean class accuracy and mIoU from point counts summed over the whole test set."""

    headline = "miou"

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        report = metrics.semseg_report(self.confusion, self.class_names)
        scalars = {k: report[k] for k in ("overall_accuracy", "mean_class_accuracy", "miou")}
        details = {k: report[k] for k in ("iou_per_class", "num_points")}
        details["confusion"] = self.confusion  # 6-fold: pool the six folds' counts, then score
        return scalars, details


class PartSegEvaluator:
    """Instance and class mIoU of the shapes (absent-part rule), for both argmax conventions; the
    configured one is reported plain, the other under `<other>_argmax/`."""

    headline = "instance_miou"

    def __init__(self, data: finetune_data.TaskData, argmax: str):
        self.category_names = data.category_names
        self.argmax = argmax
        self.reset()

    def reset(self) -> None:
        self.categories: list[np.ndarray] = []
        self.shape_ious: dict[str, list[np.ndarray]] = {name: [] for name in PART_ARGMAX}

    def add(self, out: dict[str, np.ndarray]) -> None:
        real = out["mask"]
        categories, labels = out["category"][real], out["label"][real]
        self.categories.append(categories)
        for name, key in zip(PART_ARGMAX, ("prediction", "category_prediction"), strict=True):
            self.shape_ious[name].append(
                metrics.part_seg_shape_ious(out[key][real], labels, categories)
            )

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        categories = np.concatenate(self.categories)
        reports = {
            name: metrics.part_seg_report(np.concatenate(ious), categories, self.category_names)
            for name, ious in self.shape_ious.items()
        }
        chosen = reports[self.argmax]
        scalars = {"instance_miou": chosen["instance_miou"], "class_miou": chosen["class_miou"]}
        for name, report in reports.items():
            if name != self.argmax:
                scalars[f"{name}_argmax/instance_miou"] = report["instance_miou"]
                scalars[f"{name}_argmax/class_miou"] = report["class_miou"]
        details = {
            "argmax": self.argmax,
            "per_category_miou": chosen["per_category_miou"],
            "num_shapes": chosen["num_shapes"],
        }
        return scalars, details


def make_evaluator(config: ml_collections.ConfigDict, data: finetune_data.TaskData):
    if config.task == "partseg":
        return PartSegEvaluator(data, config.evals.part_argmax)
    return (ClassificationEvaluator if config.task == "classification" else SemSegEvaluator)(data)


def evaluate(eval_step, state, data, evaluator, global_batch_size: int, mesh):
    """Runs the whole test split once (every process, same number of steps) -> (scalars, details)."""
    evaluator.reset()
    batches = pipeline.eval_batches(
        data.test,
        parallel.local_batch_size(global_batch_size, mesh),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    total = math.ceil(len(data.test["label"]) / global_batch_size)
    for local in run_log.progress(batches, total=total, desc="eval", unit="batch"):
        evaluator.add(jax.device_get(eval_step(state, parallel.global_batch(local, mesh))))
    return evaluator.result()


# ---------------------------------------------------------------------------------------------
# Initialising from a pretrained encoder.


def adopt_encoder_structure(config: ml_collections.ConfigDict, found: Any, where: str) -> list[str]:
    """Makes `config.model.point_encoder` build the encoder stored in `found` (a tower config):
    its name, emb_dims and widths, keeping the config's runtime fields (k, dtype, ...) when the
    name agrees. Returns the changes made, for the log."""
    found = found.to_dict() if hasattr(found, "to_dict") else dict(found)
    ours = config.model.point_encoder
    if found["name"] != ours.name:
        config.model.point_encoder = default_point_encoder_config(
            found["name"], **{k: v for k, v in found.items() if k != "name"}
        )
        return [f"name {ours.name} -> {found['name']} (whole encoder config from {where})"]
    changes = []
    for field in STRUCTURE_FIELDS:
        if field not in found:
            continue
        value = tuple(found[field]) if isinstance(found[field], list) else found[field]
        if value != ours[field]:
            changes.append(f"{field} {ours[field]} -> {value}")
            ours[field] = value
    return changes


def _flat(tree: Any) -> dict[str, Any]:
    return flax.traverse_util.flatten_dict(tree, sep="/") if tree else {}


def _layer_of(path: str) -> str:
    """'params/point_encoder/edgeconv1/bn/scale' -> 'point_encoder/edgeconv1'; 'params/head/x'
    -> 'head': the unit that is loaded or left fresh as a whole."""
    parts = path.split("/")[1:]
    return "/".join(parts[:2]) if parts[0] == ENCODER else parts[0]


def load_encoder_variables(
    fresh: dict[str, Any], encoder: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Puts a checkpoint's encoder variables into the fine-tune model's fresh variables.

    fresh: {"params", "batch_stats"} of the whole model; encoder: the same of one point encoder.
    Every leaf of `point_encoder` found with the same path and shape is loaded. A layer with a
    leaf of another shape (the first EdgeConv of the 9-channel sem-seg network: kernel [18, F]
    here, [6, F] pretrained) stays fresh as a whole, its batch statistics included. Returns the
    merged variables and a report: loaded / unused leaves, shape mismatches, fresh layers.
    """
    mismatched: dict[str, dict[str, list[int]]] = {}
    ours = {c: _flat(fresh.get(c, {}).get(ENCODER, {})) for c in COLLECTIONS}
    theirs = {c: _flat(encoder.get(c, {})) for c in COLLECTIONS}
    for c in COLLECTIONS:
        for path, value in theirs[c].items():
            if path in ours[c] and np.shape(value) != np.shape(ours[c][path]):
                mismatched[f"{c}/{ENCODER}/{path}"] = {
                    "checkpoint": list(np.shape(value)),
                    "model": list(np.shape(ours[c][path])),
                }
    skipped_layers = {_layer_of(path) for path in mismatched}
    merged, loaded, unused = {}, [], []
    for c in COLLECTIONS:
        leaves = dict(ours[c])
        for path, value in theirs[c].items():
            name = f"{c}/{ENCODER}/{path}"
            if path not in leaves:
                unused.append(name)
            elif _layer_of(name) not in skipped_layers:
                leaves[path] = np.asarray(value, dtype=np.asarray(leaves[path]).dtype)
                loaded.append(name)
        merged[c] = dict(fresh.get(c, {}))
        if leaves:
            merged[c][ENCODER] = flax.traverse_util.unflatten_dict(leaves, sep="/")
    every_leaf = [f"{c}/{path}" for c in COLLECTIONS for path in _flat(fresh.get(c, {}))]
    fresh_layers = sorted({_layer_of(p) for p in every_leaf} - {_layer_of(p) for p in loaded})
    report = {
        "loaded": sorted(loaded),
        "fresh_layers": fresh_layers,
        "shape_mismatch": mismatched,
        "unused": sorted(unused),
    }
    return merged, report


def _describe_init(report: dict[str, Any]) -> str:
    mismatch = "; ".join(
        f"{path} {v['checkpoint']} in the checkpoint, {v['model']} here"
        for path, v in report["shape_mismatch"].items()
    )
    text = (
        f"{len(report['loaded'])} encoder leaves loaded; fresh: {', '.join(report['fresh_layers'])}"
    )
    if mismatch:
        text += f"; left fresh for their shape: {mismatch}"
    if report["unused"]:
        text += f"; unused: {', '.join(report['unused'])}"
    return text


def resolve_encoder(
    config: ml_collections.ConfigDict, workdir: str
) -> checkpointing.EncoderCheckpoint | None:
    """Sets the encoder structure from this run's checkpoint (resume) or from `init_from`.

    Returns the restored encoder to load when starting from `init_from`, else None.
    """
    step_dir = checkpointing.latest_step_dir(workdir)
    if step_dir is not None:
        saved = checkpointing.read_json_item(step_dir / "config")
        if saved.get("task") != config.task:
            raise checkpointing.CheckpointError(
                f"{workdir} holds a checkpoint of another kind of run (task "
                f"{saved.get('task')!r}, this one is {config.task!r}); use a fresh workdir"
            )
        changes = adopt_encoder_structure(config, saved["model"]["point_encoder"], str(step_dir))
        if changes:
            run_log.log(f"restore: encoder as this run's checkpoint: {'; '.join(changes)}")
        return None
    if not config.init_from:
        return None
    found = checkpointing.restore_encoder(config.init_from, tower="point")
    changes = adopt_encoder_structure(config, found.model, found.path)
    if changes:
        run_log.log(f"init_from: encoder structure from the checkpoint: {'; '.join(changes)}")
    return found


# ---------------------------------------------------------------------------------------------
# Best-so-far bookkeeping.


def _read_best(workdir: str) -> dict[str, Any] | None:
    path = Path(workdir) / EVAL_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("best")


def _write_eval(workdir: str, record: dict[str, Any]) -> None:
    if run_log.is_main_process():
        io_utils.atomic_write_json(Path(workdir) / EVAL_FILE, run_log.config_to_dict(record))


# ---------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Fine-tunes until `train.num_steps` (or `num_epochs`), resuming from `workdir` if possible."""
    # --- logging ------------------------------------------------------------------------------
    validate_config(config)
    config = copy.deepcopy(config)  # the encoder structure may be adopted from a checkpoint
    workdir = str(Path(workdir).absolute())
    Path(workdir).mkdir(parents=True, exist_ok=True)
    run_log.log(f"finetune [{config.task}] in {workdir} on {jax.process_count()} process(es)")
    metrics_writer = run_log.MetricsWriter(workdir)

    # --- mesh ---------------------------------------------------------------------------------
    run_log.log("mesh")
    mesh = parallel.make_mesh(config.mesh.num_devices)
    parallel.local_batch_size(config.train.batch_size, mesh)  # raise early when it does not split
    parallel.local_batch_size(config.evals.batch_size, mesh)

    # --- data ---------------------------------------------------------------------------------
    run_log.log(f"data: reading {config.data.format} from {config.data.root}")
    data = finetune_data.load_task_data(config)
    stream = finetune_data.ArrayStream(
        data.train,
        global_batch_size=config.train.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    steps_per_epoch = stream.steps_per_epoch
    total_steps = config_lib.duration_steps(config.train, "num", steps_per_epoch, where="train")
    if total_steps is None:
        raise config_lib.ConfigError("set 'train.num_steps' or 'train.num_epochs'")
    eval_every = config_lib.duration_steps(config.evals, "every", steps_per_epoch, where="evals")
    ckpt_every = config_lib.duration_steps(config.ckpt, "every", steps_per_epoch, where="ckpt")
    log_every = max(1, int(config.train.log_every_steps))

    # --- model and optimiser shapes -----------------------------------------------------------
    run_log.log("model and optimiser shapes")
    encoder_to_load = resolve_encoder(config, workdir)
    run_log.write_config(workdir, config)
    model = build_model(config, data)
    tx, schedule = optim.make_optimizer(config.optim, config.schedule, total_steps)
    create_state = make_create_state(model, tx, config, data)
    init_key = jax.random.key(config.seed)
    abstract_state = jax.eval_shape(create_state, init_key)

    # --- shardings and steps ------------------------------------------------------------------
    run_log.log("shardings and compile")
    state_sharding = jax.tree.map(lambda _: parallel.replicated(mesh), abstract_state)
    traces = {"count": 0}
    step_fn = make_train_step(model, tx, schedule, config)

    def counted_step(state, batch):
        traces["count"] += 1  # runs only while tracing: counts compilations of the step
        return step_fn(state, batch)

    train_step = jax.jit(
        counted_step,
        in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
        out_shardings=(state_sharding, parallel.replicated(mesh)),
        donate_argnums=(0,),
    )
    eval_step = jax.jit(
        make_eval_step(model, config),
        in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
        out_shardings=parallel.replicated(mesh),
    )
    abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        abstract_state,
        state_sharding,
    )

    # --- restore ------------------------------------------------------------------------------
    ckpt = checkpointing.RunCheckpointer(
        workdir, ckpt_every or 0, config.ckpt.max_to_keep, use_async=config.ckpt.use_async
    )
    latest = ckpt.latest_step()
    init_report = None
    best = None
    if latest is not None:
        run_log.log(f"restore: resuming from step {latest}")
        state, data_state = ckpt.restore(latest, abstract_state)
        stream.set_state(data_state)
        best = _read_best(workdir)
    else:
        state = jax.jit(create_state, out_shardings=state_sharding)(init_key)
        if encoder_to_load is not None:
            fresh = {"params": state.params, "batch_stats": state.batch_stats}
            merged, init_report = load_encoder_variables(
                jax.device_get(fresh), encoder_to_load.variables
            )
            if not init_report["loaded"]:
                raise checkpointing.CheckpointError(
                    f"init_from {config.init_from}: no encoder variable fits this model "
                    f"({_describe_init(init_report)})"
                )
            init_report["source"] = f"{encoder_to_load.path} ({encoder_to_load.source})"
            run_log.log(
                f"restore: init_from {init_report['source']}: {_describe_init(init_report)}"
            )
            if run_log.is_main_process():
                io_utils.atomic_write_json(Path(workdir) / INIT_FILE, init_report)
            state = jax.device_put(
                state.replace(
                    params=merged["params"],
                    batch_stats=merged["batch_stats"],
                    opt_state=tx.init(merged["params"]),
                ),
                state_sharding,
            )
        else:
            run_log.log("restore: none, starting from scratch")
    start_step = int(jax.device_get(state.step))

    # --- evaluator ----------------------------------------------------------------------------
    evaluator = make_evaluator(config, data)
    headline = evaluator.headline
    latest_eval: dict[str, float] = {}

    def run_eval(done: int) -> None:
        nonlocal best, latest_eval
        scalars, details = evaluate(
            eval_step, state, data, evaluator, config.evals.batch_size, mesh
        )
        if best is None or scalars[headline] > best[headline]:
            best = {"step": done, **scalars}
        latest_eval = scalars
        row = {f"eval/{k}": v for k, v in scalars.items()}
        row[f"eval/best_{headline}"] = best[headline]
        metrics_writer.write(done, row)
        record = {"task": config.task, "step": done, "headline": headline, **scalars}
        _write_eval(workdir, {**record, "details": details, "best": best})
        run_log.log(
            f"eval at step {done}: {headline} {scalars[headline]:.4f} (best {best[headline]:.4f})"
        )

    # --- loop ---------------------------------------------------------------------------------
    run_log.log(f"loop: steps {start_step} -> {total_steps} ({steps_per_epoch} per epoch)")
    summary: dict[str, Any] = {
        "start_step": start_step,
        "total_steps": total_steps,
        "stopped": "completed",
    }
    window = loop_lib.MetricsWindow()
    bar = run_log.progress(
        total=total_steps, initial=start_step, desc=f"finetune {config.task}", unit="step"
    )
    try:
        with loop_lib.PreemptionNotice() as preemption:
            for step in range(start_step, total_steps):
                batch = parallel.global_batch(next(stream), mesh)
                state, step_metrics = train_step(state, batch)
                window.add(step_metrics)
                bar.update(1)
                done = step + 1

                if done % log_every == 0 or done == total_steps:
                    loop_lib.check_finite(state, LOSS_NAMES)
                    row = window.flush(config.train.batch_size)
                    metrics_writer.write(done, row)
                    bar.set_postfix(loss=f"{row['train/loss']:.4f}")
                if (eval_every and done % eval_every == 0) or done == total_steps:
                    loop_lib.check_finite(state, LOSS_NAMES)
                    run_eval(done)
                preempted = parallel.all_processes_agree(preemption.received)
                if ckpt.should_save(done) or done == total_steps or preempted:
                    loop_lib.check_finite(state, LOSS_NAMES)
                    ckpt.save(
                        done, state, stream.get_state(), run_log.config_to_dict(config), force=True
                    )
                if preempted:
                    run_log.log(f"preemption notice: saved step {done}, stopping")
                    summary["stopped"] = "preempted"
                    break
    finally:  # a failing run still finishes its pending (good) checkpoint saves
        bar.close()
        ckpt.close()
    summary.update(
        final_step=int(jax.device_get(state.step)),
        compilations=traces["count"],
        eval=latest_eval,
        best=best,
        init=init_report,
    )
    run_log.log(f"done: step {summary['final_step']}, best {headline}: {best and best[headline]}")
    return summary
