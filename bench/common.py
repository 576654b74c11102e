"""Benchmark conventions: one JSON object per measurement, on its own line, on stdout.

Every row has `name`, the configuration measured (`config`), `median_s` over >= 5 timed
repetitions after warm-up (all repetitions in `times_s`), a throughput (`objects_per_s`, or
`views_per_s` for rendering) and `peak_rss_mb` of this process. Timings never live in tests.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

MIN_REPEATS = 5


def peak_rss_mb() -> float:
    """Peak resident set size of this process (and waited-for children, if asked) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def time_repeats(fn: Callable[[], Any], repeats: int = MIN_REPEATS, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` after `warmup` untimed calls.

    `fn` must block until its work is done (call `jax.block_until_ready` inside it).
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"at least {MIN_REPEATS} timed repetitions, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def row(
    name: str,
    config: dict[str, Any],
    times_s: list[float],
    objects: float | None = None,
    views: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Builds a result row; throughput = items per repetition / median seconds."""
    median = statistics.median(times_s)
    out: dict[str, Any] = {
        "name": name,
        "config": config,
        "median_s": median,
        "repeats": len(times_s),
        "times_s": [round(t, 6) for t in times_s],
    }
    if objects is not None:
        out["objects_per_s"] = objects / median
    if views is not None:
        out["views_per_s"] = views / median
    out.update(extra)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def device_description() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')} x{jax.device_count()} (cpus={os.cpu_count()})"


def device_peak_memory_mb() -> float | None:
    """High-water mark of accelerator memory (None on backends that do not report it)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def add_repo_to_path() -> None:
    """Lets `python bench/x.py` import the package from a source checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
