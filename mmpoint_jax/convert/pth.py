"""Reading `.pth` files safely: torch's weights-only unpickler, never full unpickling by default.

A `.pth` is a pickle, and a pickle can run code when loaded; people download these files. The
weights-only loader accepts tensors, dicts, lists, numbers and strings (everything a state_dict
or {'state_dict': ..., 'epoch': ...} checkpoint holds) and refuses anything else. Full
unpickling happens only when the caller passes `trust_pickle=True` (the CLI's --trust_pickle).
torch is an optional dependency (`pip install .[torch]`) needed only here.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

TRUST_FLAG = "--trust_pickle"


class UnsafePickleError(ValueError):
    """The file needs full unpickling (it holds Python objects besides tensors)."""


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading .pth files needs PyTorch: pip install 'mmpoint-jax[torch]' (CPU build will do)"
        ) from None
    return torch


def _to_numpy(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def load_pth(path: str | os.PathLike, trust_pickle: bool = False) -> Any:
    """Loads a `.pth` on CPU with tensors turned into numpy arrays."""
    torch = _torch()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise ValueError(f"{path}: could not be unpickled: {e}") from e
        raise UnsafePickleError(
            f"{path} holds Python objects besides tensors; loading it would run code from the file "
            f"(full unpickling), so it was refused. If you trust where it came from, rerun with "
            f"{TRUST_FLAG}."
        ) from None
    except Exception as e:  # noqa: BLE001 - torch's errors for truncated / non-torch files vary
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint: {type(e).__name__}: {e}"
        ) from e
    return _to_numpy(obj)
