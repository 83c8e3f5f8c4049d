"""Training: a LightningModule around an smp network, the run folder, and ``train(config)``.

Lightning does the loop, checkpointing (best and last), early stopping, logging (CSV and TensorBoard),
the progress bar, seeding, precision and devices; this package adds only what is ours:

* :mod:`.module`: :class:`SegModule` (the network, :class:`SegmentationLoss`, optimiser and per-step LR
  schedule from the config, and accuracy/mIoU through :class:`cityseg.metrics.SegmentationMetrics`);
* the loss terms, optimisers and LR schedules are registries by name in :mod:`cityseg.loss_registry` and
  :mod:`cityseg.optim`, below this package (the config lists their names without importing it);
* :mod:`.budget`: :class:`BudgetPlanner`, which fits the run to ``train.budget_minutes``;
* :mod:`.trainer`: the Lightning Trainer and its callbacks; :mod:`.data`: the LightningDataModule;
* :mod:`.outputs`: what a training run writes into its folder; :mod:`.pipeline`: :func:`train`, the whole run.

Names are loaded on first use (PEP 562): ``import cityseg.training`` alone loads no Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "pipeline",
    "class_weights": "pipeline",
    "RUN_DIR_ENV": "pipeline",
    "SegModule": "module",
    "SegmentationLoss": "module",
    "BudgetPlanner": "budget",
    "configure_threads": "trainer",  # lives in cityseg.devices
    "make_trainer": "trainer",
    "SegDataModule": "data",
    "HISTORY_COLUMNS": "outputs",
    "write_history": "outputs",
    "finish_run": "outputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
