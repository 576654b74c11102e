"""Optimisers and learning-rate schedules from the `optim` and `schedule` config sections.

PyTorch's `Adam(weight_decay=w)` and `SGD(weight_decay=w)` add `w * param` to the gradient
before the update (L2), which is not AdamW's decoupled decay: `add_decayed_weights` therefore
comes first in the chain. `adamw` is offered separately for those who want decoupled decay.
"""

from __future__ import annotations

import ml_collections
import optax

from mmpoint_jax import config_lib

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def default_optim_config(
    name: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-6
) -> ml_collections.ConfigDict:
    """CrossPoint's pretraining recipe: Adam, lr 1e-3, L2 weight decay 1e-6."""
    return ml_collections.ConfigDict(
        dict(
            name=name,
            lr=lr,
            weight_decay=weight_decay,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            momentum=0.9,  # sgd only
            nesterov=False,  # sgd only
            grad_clip_norm=0.0,  # 0 = off
        )
    )


def default_schedule_config() -> ml_collections.ConfigDict:
    """Cosine annealing from lr to `final_lr_fraction * lr` over the run (CrossPoint: to 0)."""
    return ml_collections.ConfigDict(dict(name="cosine", warmup_steps=0, final_lr_fraction=0.0))


def make_schedule(
    optim: ml_collections.ConfigDict, schedule: ml_collections.ConfigDict, total_steps: int
):
    config_lib.check_choice(
        ml_collections.ConfigDict({"schedule": schedule}), "schedule.name", SCHEDULES
    )
    if schedule.name == "constant":
        return optax.constant_schedule(optim.lr)
    warmup = int(schedule.warmup_steps)
    decay_steps = max(int(total_steps), warmup + 1)
    if warmup == 0:
        return optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=schedule.final_lr_fraction)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else optim.lr,
        peak_value=optim.lr,
        warmup_steps=warmup,
        decay_steps=decay_steps,
        end_value=optim.lr * schedule.final_lr_fraction,
    )


def make_optimizer(
    optim: ml_collections.ConfigDict, schedule: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns the optax chain and its learning-rate schedule (for logging)."""
    config_lib.check_choice(ml_collections.ConfigDict({"optim": optim}), "optim.name", OPTIMIZERS)
    lr = make_schedule(optim, schedule, total_steps)
    parts = []
    if optim.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
    if optim.name == "adamw":
        parts += [
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
            optax.add_decayed_weights(optim.weight_decay),
        ]
    else:
        if optim.weight_decay:
            parts.append(optax.add_decayed_weights(optim.weight_decay))  # L2, as PyTorch
        if optim.name == "adam":
            parts.append(optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps))
        else:
            parts.append(optax.trace(decay=optim.momentum, nesterov=optim.nesterov))
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts), lr
