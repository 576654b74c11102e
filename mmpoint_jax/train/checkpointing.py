"""Every Orbax call of the project lives here (STYLE.md: Orbax is imported in one module).

Two kinds of checkpoint are read and written:

* **Encoder export** (a folder): items `variables` ({"params", "batch_stats"} of one tower, plus
  optionally "heads": {"params", "batch_stats"} of its projection head(s)) and `meta` (JSON:
  `kind` = "mmpoint.encoder", `tower` = "point" | "image", `model` = the tower's config dict that
  `mmpoint_jax.models` builds it from, `heads_model` = the heads' config or null, `source`). Written by
  `mmpoint_jax.convert` (PyTorch imports) and by `export_encoder` after pretraining.
* **Pretraining checkpoints**: `<workdir>/checkpoints/<step>/` with items `state` (the train state
  PyTree: `params`, `batch_stats`, `opt_state`, `step`, ...; the 3D tower under
  `params/point_encoder` and `batch_stats/point_encoder`), `data_iter` (grain iterator state) and
  `config` (the resolved run config as JSON).

`restore_encoder(path)` takes any of: an encoder export, one pretraining step folder, or a
pretraining workdir (its latest complete step), and returns the tower's config and variables.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

ENCODER_KIND = "mmpoint.encoder"
CHECKPOINTS_SUBDIR = "checkpoints"
# Names of the towers inside the joint model's variables (models/mmpoint.py uses the same).
TOWER_SUBTREES = {"point": "point_encoder", "image": "image_encoder"}


class CheckpointError(ValueError):
    """A checkpoint path is missing, incomplete, or not of a kind this code reads."""


@dataclasses.dataclass(frozen=True)
class EncoderCheckpoint:
    tower: str  # "point" or "image"
    model: ml_collections.ConfigDict  # the tower's config (name, k, emb_dims, ...)
    variables: dict[str, Any]  # {"params": ..., "batch_stats": ...} as numpy arrays
    path: str
    source: str  # "export", "pretrain" or what the export recorded (e.g. "pytorch:crosspoint")
    heads: dict[str, Any] | None = None  # {"params", "batch_stats"} of the projection head(s)
    heads_model: ml_collections.ConfigDict | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _to_builtin(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "size", 2) == 1:
        return obj.item()
    return obj


def save_encoder(
    directory: str | os.PathLike,
    variables: dict[str, Any],
    model_config: Any,
    *,
    tower: str = "point",
    source: str = "export",
    heads: dict[str, Any] | None = None,
    heads_config: Any = None,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes an encoder export (Orbax writes to a temporary folder and renames it when complete).

    `variables` = {"params", "batch_stats"} of the tower; `heads` the same for its projection
    head(s), with `heads_config` describing them (both optional).
    """
    if tower not in TOWER_SUBTREES:
        raise CheckpointError(f"tower must be one of {sorted(TOWER_SUBTREES)}, got {tower!r}")
    directory = Path(directory).absolute()
    if directory.exists():
        if not overwrite:
            raise CheckpointError(f"{directory} exists; pass overwrite=True to replace it")
    variables = {
        k: v for k, v in variables.items() if v is not None and len(jax.tree.leaves(v)) > 0
    }
    if heads:
        variables["heads"] = {
            k: v for k, v in heads.items() if v is not None and len(jax.tree.leaves(v)) > 0
        }
    meta = {
        "kind": ENCODER_KIND,
        "tower": tower,
        "model": _to_builtin(model_config),
        "heads_model": _to_builtin(heads_config) if heads else None,
        "source": source,
        **_to_builtin(extra_meta or {}),
    }
    ocp = _ocp()
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(
            directory,
            ocp.args.Composite(
                variables=ocp.args.StandardSave(jax.tree.map(np.asarray, variables)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=overwrite,
        )
    return directory


def _is_complete_orbax_step(path: Path) -> bool:
    return path.is_dir() and (path / "_CHECKPOINT_METADATA").exists()


def latest_step_dir(workdir: str | os.PathLike) -> Path | None:
    """Newest complete step folder under `<workdir>/checkpoints` (None when there is none)."""
    root = Path(workdir) / CHECKPOINTS_SUBDIR
    if not root.is_dir():
        return None
    steps = [p for p in root.iterdir() if p.name.isdigit() and _is_complete_orbax_step(p)]
    return max(steps, key=lambda p: int(p.name)) if steps else None


def _tree_metadata(item_dir: Path) -> Any:
    ocp = _ocp()
    with ocp.PyTreeCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(item_dir)
    tree = getattr(metadata, "item_metadata", metadata)
    return getattr(tree, "tree", tree)


def restore_subtree(
    item_dir: str | os.PathLike, select: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Restores a PyTree item (all of it, or the keys named by `select`) as numpy arrays.

    `select` mirrors the tree: {"params": {"point_encoder": True}} restores only that branch,
    so evaluating a pretraining checkpoint does not read its optimiser state.
    """
    item_dir = Path(item_dir)
    if not item_dir.is_dir():
        raise CheckpointError(f"checkpoint item not found: {item_dir}")
    metadata = _tree_metadata(item_dir)

    def pick(meta, sel, where):
        if sel is True:
            return meta
        out = {}
        for key, sub in sel.items():
            if not isinstance(meta, dict) or key not in meta:
                have = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
                raise CheckpointError(
                    f"{item_dir}: no '{where}{key}' in the checkpoint (has {have})"
                )
            out[key] = pick(meta[key], sub, f"{where}{key}/")
        return out

    wanted = metadata if select is None else pick(metadata, select, "")
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), wanted)
    ocp = _ocp()
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(
            item_dir,
            args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True
            ),
        )


def read_json_item(item_dir: str | os.PathLike) -> Any:
    ocp = _ocp()
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
        return checkpointer.restore(Path(item_dir), ocp.args.JsonRestore())


def _restore_export(path: Path) -> EncoderCheckpoint:
    meta = read_json_item(path / "meta")
    if not isinstance(meta, dict) or meta.get("kind") != ENCODER_KIND:
        raise CheckpointError(
            f"{path}/meta is not an mmpoint encoder export (kind={meta.get('kind')!r})"
        )
    variables = restore_subtree(path / "variables")
    heads = variables.pop("heads", None)
    extra = {
        k: v
        for k, v in meta.items()
        if k not in ("kind", "tower", "model", "source", "heads_model")
    }
    heads_model = meta.get("heads_model")
    return EncoderCheckpoint(
        tower=meta["tower"],
        model=ml_collections.ConfigDict(meta["model"]),
        variables=variables,
        path=str(path),
        source=meta.get("source", "export"),
        heads=heads,
        heads_model=ml_collections.ConfigDict(heads_model) if heads_model else None,
        extra=extra,
    )


def _restore_pretrain_step(path: Path, tower: str) -> EncoderCheckpoint:
    config = read_json_item(path / "config")
    subtree = TOWER_SUBTREES[tower]
    model_key = f"{tower}_encoder"
    try:
        model_config = config["model"][model_key]
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}/config has no 'model.{model_key}' section") from None
    variables = {}
    for collection in ("params", "batch_stats"):
        try:
            variables[collection] = restore_subtree(path / "state", {collection: {subtree: True}})[
                collection
            ][subtree]
        except CheckpointError:
            if collection == "params":
                raise
    return EncoderCheckpoint(
        tower=tower,
        model=ml_collections.ConfigDict(model_config),
        variables=variables,
        path=str(path),
        source="pretrain",
        extra={"step": int(path.name) if path.name.isdigit() else None, "run_config": config},
    )


def restore_encoder(path: str | os.PathLike, tower: str = "point") -> EncoderCheckpoint:
    """Restores one tower from an encoder export, a pretraining step folder, or a workdir."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path not found: {path}")
    if (path / "meta").is_dir() and (path / "variables").is_dir():
        found = _restore_export(path)
        if found.tower != tower:
            raise CheckpointError(f"{path} holds the {found.tower} tower, {tower} was asked for")
        return found
    if (path / "state").is_dir() and (path / "config").is_dir():
        if not _is_complete_orbax_step(path):
            raise CheckpointError(f"{path} is an incomplete checkpoint (no _CHECKPOINT_METADATA)")
        return _restore_pretrain_step(path, tower)
    step_dir = latest_step_dir(path)
    if step_dir is not None:
        return _restore_pretrain_step(step_dir, tower)
    raise CheckpointError(
        f"{path} is neither an encoder export (meta/, variables/), a checkpoint step "
        f"(state/, config/) nor a workdir with complete checkpoints under {CHECKPOINTS_SUBDIR}/"
    )


# --------------------------------------------------------------------------------------------
# Pretraining / fine-tuning runs: CheckpointManager over <workdir>/checkpoints/<step>/.


class RunCheckpointer:
    """Saves and restores a run's train state, data-iterator state and config.

    Saves are asynchronous (the device-to-host copy happens before `save` returns, the write in
    the background) and atomic: Orbax writes to a temporary folder and renames it when complete,
    so a run killed at any moment leaves only whole checkpoints. Every process calls every method.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        every_steps: int,
        max_to_keep: int = 3,
        use_async: bool = True,
    ):
        ocp = _ocp()
        self.directory = Path(workdir).absolute() / CHECKPOINTS_SUBDIR
        self.every_steps = int(every_steps)
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(self.every_steps, 1),
            max_to_keep=max_to_keep,
            enable_async_checkpointing=use_async,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data_iter", "config")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def should_save(self, step: int) -> bool:
        # Our own rule rather than the manager's (which also saves the first step it sees).
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(
        self, step: int, state: Any, data_state: Any, config: Any, force: bool = False
    ) -> bool:
        ocp = _ocp()
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data_iter=ocp.args.JsonSave(_to_builtin(data_state)),
                config=ocp.args.JsonSave(_to_builtin(config)),
            ),
            force=force,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
        """Restores step `step` into the shapes and shardings of `abstract_state`."""
        ocp = _ocp()
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data_iter=ocp.args.JsonRestore(),
            ),
        )
        return restored["state"], restored["data_iter"]

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def load_init_variables(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Variables to warm-start a joint model from, in the joint model's naming, and a description.

    A pretraining checkpoint (step folder or workdir) gives its whole `params` and `batch_stats`;
    an encoder export gives its tower under `point_encoder` or `image_encoder` (its projection
    heads, whose layout depends on the joint model's head config, are not used).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"init_from path not found: {path}")
    if (path / "meta").is_dir() and (path / "variables").is_dir():
        export = _restore_export(path)
        subtree = TOWER_SUBTREES[export.tower]
        variables = {k: {subtree: v} for k, v in export.variables.items()}
        return variables, f"{export.tower} encoder export {path} ({export.source})"
    step_dir = path if (path / "state").is_dir() else latest_step_dir(path)
    if step_dir is None:
        raise CheckpointError(f"init_from {path}: no encoder export or complete checkpoint found")
    variables = {}
    for collection in ("params", "batch_stats"):
        try:
            variables[collection] = restore_subtree(step_dir / "state", {collection: True})[
                collection
            ]
        except CheckpointError:
            if collection == "params":
                raise
    return variables, f"checkpoint {step_dir}"
