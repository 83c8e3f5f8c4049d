"""Optimisers and learning-rate schedules, each chosen by name from a registry.

Torch is imported inside the factories, so ``cityseg.config`` can list the valid names (its ``CHOICES``)
without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any


def _adam(params: Iterable, optim: Any):
    import torch

    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay, **_kernel(optim))


def _adamw(params: Iterable, optim: Any):
    import torch

    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, **_kernel(optim))


def _sgd(params: Iterable, optim: Any):
    import torch

    return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)


def _kernel(optim: Any) -> dict[str, bool]:
    """``optim.fused``: one fused kernel for the whole parameter update instead of a loop over tensors."""
    return {"fused": True} if getattr(optim, "fused", False) else {}


# name -> factory(parameters, OptimConfig) -> torch optimiser
OPTIMIZERS: dict[str, Callable] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def make_optimizer(params: Iterable, optim: Any):
    """The optimiser ``optim.optimizer`` names, over ``params``, with the config's lr and weight decay."""
    from cityseg.errors import CitysegError

    factory = OPTIMIZERS.get(optim.optimizer)
    if factory is None:
        raise CitysegError(f"unknown optimizer {optim.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return factory(params, optim)


def _constant(progress: float, power: float) -> float:
    return 1.0


def _cosine(progress: float, power: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _poly(progress: float, power: float) -> float:
    return (1.0 - progress) ** power  # as in DeepLab


# name -> decay(progress in [0, 1], power) -> LR factor
SCHEDULES: dict[str, Callable[[float, float], float]] = {"none": _constant, "cosine": _cosine, "poly": _poly}


class LRSchedule:
    """Per-step LR factor: optional linear warm-up, then a :data:`SCHEDULES` decay to 0 over ``total_steps``.

    A plain object (not a closure) so ``LambdaLR`` saves ``total_steps`` in checkpoints, and so the
    budget planner can shorten or lengthen the decay while training runs.

    Example:
        >>> schedule = LRSchedule("cosine", total_steps=100)
        >>> schedule(0), round(schedule(50), 3), schedule(100)
        (1.0, 0.5, 0.0)
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, power: float = 0.9):
        if kind not in SCHEDULES:
            from cityseg.errors import CitysegError

            raise CitysegError(f"unknown schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")
        self.kind = kind
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = warmup_steps
        self.power = power  # poly exponent

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return 0.01 + 0.99 * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return SCHEDULES[self.kind](progress, self.power)
