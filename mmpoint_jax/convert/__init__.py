"""Import of PyTorch CrossPoint / MM-Point checkpoints into encoder exports.

`python -m mmpoint_jax.convert IN.pth OUT_DIR --model dgcnn|resnet50_head [--k 20]` reads the
`.pth` with torch's weights-only loader (`pth.py`), maps its keys (`torch_layouts.py`, pure
numpy) and writes an encoder export (`train/checkpointing.save_encoder`) with the projection
heads (and classifier, if any) stored beside the encoder. `restore_encoder(OUT_DIR)` reads it back.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmpoint_jax.convert.torch_layouts import (
    CONVERTERS,
    LAYOUTS,
    ConversionError,
    ConvertedTower,
    convert_dgcnn,
    convert_resnet_with_head,
    unwrap_state_dict,
)


def convert_state_dict(obj, model: str, k: int = 20, source: str = "state_dict") -> ConvertedTower:
    """A loaded checkpoint object (dict of numpy arrays, maybe wrapped) -> ConvertedTower."""
    if model not in CONVERTERS:
        raise ConversionError(f"--model must be one of {sorted(CONVERTERS)}, got {model!r}")
    state = unwrap_state_dict(obj, source)
    if model == "dgcnn":
        return convert_dgcnn(state, k=k, source=source)
    return convert_resnet_with_head(state, source=source)


def write_export(
    converted: ConvertedTower,
    out_dir: str | os.PathLike,
    pth_path: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a ConvertedTower as an encoder export (heads stored beside the encoder)."""
    from mmpoint_jax.train import checkpointing

    extra = {"layout": converted.layout}
    if pth_path is not None:
        extra["pth"] = os.path.abspath(pth_path)
    return checkpointing.save_encoder(
        out_dir,
        converted.variables,
        converted.model_config,
        tower=converted.tower,
        source=f"pytorch:{converted.layout}",
        heads=converted.heads,
        heads_config=converted.heads_config,
        extra_meta=extra,
        overwrite=overwrite,
    )


def convert_file(
    pth_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str,
    k: int = 20,
    trust_pickle: bool = False,
    overwrite: bool = False,
) -> Path:
    """Reads `pth_path`, converts it and writes the encoder export to `out_dir`."""
    from mmpoint_jax.convert.pth import load_pth

    source = os.fspath(pth_path)
    loaded = load_pth(pth_path, trust_pickle=trust_pickle)
    converted = convert_state_dict(loaded, model, k=k, source=source)
    return write_export(converted, out_dir, pth_path, overwrite=overwrite)


__all__ = [
    "CONVERTERS",
    "LAYOUTS",
    "ConversionError",
    "ConvertedTower",
    "convert_dgcnn",
    "convert_file",
    "convert_resnet_with_head",
    "convert_state_dict",
    "unwrap_state_dict",
    "write_export",
]
