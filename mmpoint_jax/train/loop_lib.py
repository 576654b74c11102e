"""Pieces every training loop shares (pretraining and fine-tuning): the non-finite guard, the
preemption notice, and the metrics window that is fetched and logged on log steps only."""

from __future__ import annotations

import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmpoint_jax.train import state as state_lib


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; the message names the step and the term."""


def guarded_update(
    state,
    params,
    batch_stats,
    opt_state,
    metrics: dict[str, jax.Array],
    grad_norm: jax.Array,
    loss_names: list[str],
):
    """The next state, or the same state (step + 1) once any loss term or the gradient is not
    finite: the first bad step and its terms are recorded on device, so the host finds out at its
    next log or save without a per-step sync, and no later checkpoint holds the bad update."""
    bad = state_lib.finite_bitmask(metrics, loss_names)
    bad = bad | jnp.where(jnp.isfinite(grad_norm), 0, 1 << len(loss_names))
    ok = (bad == 0) & (state.nonfinite_step < 0)
    first_bad = (bad != 0) & (state.nonfinite_step < 0)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
    return state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        nonfinite_step=jnp.where(first_bad, state.step, state.nonfinite_step),
        nonfinite_terms=jnp.where(first_bad, bad, state.nonfinite_terms),
    )


def check_finite(state, loss_names: list[str]) -> None:
    """Raises NonFiniteLossError naming the first non-finite step and its terms (one host sync)."""
    bad_step = int(jax.device_get(state.nonfinite_step))
    if bad_step >= 0:
        mask = int(jax.device_get(state.nonfinite_terms))
        terms = state_lib.decode_bitmask(mask, list(loss_names) + ["grad_norm"])
        raise NonFiniteLossError(
            f"non-finite loss at step {bad_step} in {', '.join(terms)}; the run stopped and the last "
            f"checkpoint (before step {bad_step}) is kept"
        )


class PreemptionNotice:
    """Turns SIGTERM into a flag read at the next step boundary (save, then exit cleanly)."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, the flag stays False
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


class MetricsWindow:
    """Step metrics kept on device between log steps, then fetched at once and averaged."""

    def __init__(self):
        self._pending: list[dict[str, Any]] = []
        self._start = time.perf_counter()

    def add(self, metrics: dict[str, Any]) -> None:
        self._pending.append(metrics)

    def flush(self, objects_per_step: int) -> dict[str, float]:
        """Mean of every metric over the window, plus steps/s and objects/s; starts a new window."""
        fetched = jax.device_get(self._pending)
        row = {key: float(np.mean([m[key] for m in fetched])) for key in fetched[0]}
        elapsed = time.perf_counter() - self._start
        row["train/steps_per_s"] = len(fetched) / elapsed
        row["train/objects_per_s"] = len(fetched) * objects_per_step / elapsed
        self._pending, self._start = [], time.perf_counter()
        return row
