"""Atomic file writes: nothing half-written is ever read as whole (DESIGN.md section 5)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """Mode a plain `open(path, "w")` would give (mkstemp's temporaries are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, fsyncs it, then renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # shared datasets: readable like any other file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays, paths and tuples-as-lists, so configs and metrics serialise."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_dumps_line(obj: Any) -> str:
    """One compact JSON line (metrics, benchmark rows)."""
    return json.dumps(obj, sort_keys=False, default=_json_default)
