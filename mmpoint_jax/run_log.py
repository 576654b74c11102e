"""Logging conventions for every long run, in one place.

* `progress(...)`: a progress bar with items/s and ETA (tqdm), quiet on non-zero processes.
* `MetricsWriter`: JSON lines appended to `<workdir>/metrics.jsonl`, each carrying its `step`.
* `write_config`: the resolved config as `<workdir>/config.json`, written at the start of a run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mmpoint_jax import io_utils

T = TypeVar("T")

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


def is_main_process() -> bool:
    """True on JAX process 0, or when JAX is not initialised for several processes."""
    if "jax" not in sys.modules:
        return True
    import jax

    try:
        return jax.process_index() == 0
    except Exception:  # noqa: BLE001 - before backends exist, behave as single process
        return True


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool | None = None,
):
    """A tqdm bar (rate in `unit`/s, ETA); silent on processes other than 0.

    Also usable without an iterable: `bar = progress(total=n); bar.update(k); bar.close()`.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = not is_main_process() or os.environ.get("MMPOINT_NO_PROGRESS") == "1"
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable,
        dynamic_ncols=True,
        mininterval=1.0,
        smoothing=0.1,
        file=sys.stderr,
    )


def _to_builtin(value: Any) -> Any:
    """Scalars from numpy / jax arrays become Python floats and ints for JSON."""
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/Inf; keep them readable rather than invalid
    if isinstance(value, Mapping):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class MetricsWriter:
    """Appends one JSON object per call to `<workdir>/metrics.jsonl`.

    Every line carries the `step` it describes and a wall-clock `time`. Only process 0 writes,
    so every process may call it. Lines are flushed at once: a crash loses nothing written.
    """

    def __init__(self, workdir: str | os.PathLike, filename: str = METRICS_FILE):
        self.path = Path(workdir) / filename
        self._enabled = is_main_process()
        if self._enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        row = {"step": int(step), "time": round(time.time(), 3)}
        row.update({k: _to_builtin(v) for k, v in metrics.items()})
        if self._enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(io_utils.json_dumps_line(row) + "\n")
                f.flush()
        return row


def read_metrics(workdir: str | os.PathLike, filename: str = METRICS_FILE) -> list[dict[str, Any]]:
    """All rows of a metrics file; a torn last line (a run killed mid-write) is ignored."""
    path = Path(workdir) / filename
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def config_to_dict(config: Any) -> Any:
    """A ConfigDict (or plain mapping) as JSON-ready builtins."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return _to_builtin(config)


def write_config(workdir: str | os.PathLike, config: Any, filename: str = CONFIG_FILE) -> Path:
    """Writes the resolved config to `<workdir>/config.json` atomically (process 0 only)."""
    path = Path(workdir) / filename
    if is_main_process():
        io_utils.atomic_write_json(path, config_to_dict(config))
    return path


def log(message: str) -> None:
    """One progress note, prefixed with the time and process index (to place a hang on a pod)."""
    proc = ""
    if "jax" in sys.modules:
        try:
            import jax

            if jax.process_count() > 1:
                proc = f"[p{jax.process_index()}] "
        except Exception:  # noqa: BLE001
            pass
    print(f"{time.strftime('%H:%M:%S')} {proc}{message}", file=sys.stderr, flush=True)


def iterate_with_progress(items: Iterable[T], total: int, desc: str, unit: str) -> Iterator[T]:
    """Yields from `items` while advancing a progress bar."""
    bar = progress(total=total, desc=desc, unit=unit)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
