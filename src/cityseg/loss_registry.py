"""Loss terms by name: a run's ``optim.loss`` is one term or several joined by ``+`` (``ce+dice``).

Torch is imported inside the factories, so ``cityseg.config`` can list the valid names without loading
torch; :class:`cityseg.training.module.SegmentationLoss` sums the terms; :mod:`cityseg.loss_modules` has the
two that are cityseg's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cityseg.classes import IGNORE_INDEX
from cityseg.errors import CitysegError


def _cross_entropy(class_weights: Sequence[float] | None, optim: Any):
    import torch

    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    return torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)


def _dice(class_weights: Sequence[float] | None, optim: Any):
    from cityseg.loss_modules import DiceLoss

    return DiceLoss()  # weighs every class alike: helps the rare ones


def _ohem(class_weights: Sequence[float] | None, optim: Any):
    from cityseg.loss_modules import OhemCrossEntropy

    weight = None if class_weights is None else list(class_weights)
    return OhemCrossEntropy(optim.ohem_threshold, optim.ohem_min_kept, weight)


# name -> factory(class weights or None, OptimConfig) -> loss module over (logits (B, C, H, W), masks (B, H, W))
LOSS_TERMS: dict[str, Callable] = {"ce": _cross_entropy, "dice": _dice, "ohem": _ohem}


def loss_terms(name: str) -> list[str]:
    """The term names of ``optim.loss`` (``"ce+dice"`` -> ``["ce", "dice"]``), each checked against the registry."""
    terms = [term.strip() for term in name.split("+")]
    unknown = [term for term in terms if term not in LOSS_TERMS]
    if unknown or len(set(terms)) != len(terms):
        raise CitysegError(f"unknown loss {name!r}; join distinct terms of {', '.join(LOSS_TERMS)} with + (ce+dice)")
    return terms


def loss_names() -> tuple[str, ...]:
    """Every valid ``optim.loss`` of one or two terms, for the config's choices."""
    single = tuple(LOSS_TERMS)
    return single + tuple(f"{a}+{b}" for a in single for b in single if a != b)
