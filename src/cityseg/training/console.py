"""What training prints: a progress bar on a terminal, one plain line per epoch in a log, and no library noise.

Lightning announces devices it does not use, advertises its cloud logger and prints a model table on every
run; its own dependencies add deprecation warnings a user can do nothing about. :func:`quiet_libraries` turns
those off (warnings from cityseg itself, and Lightning's warnings about the run, still show). A progress bar
redraws itself: written to a file it becomes thousands of lines, so :func:`progress_callback` gives a bar only
when stderr is a terminal and :class:`EpochLines` otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

# third-party deprecations seen on a first run (Lightning's pytree shim, torch's and timm's own moves)
NOISY_WARNINGS = (".*LeafSpec.*", ".*is deprecated.*", ".*will be removed in.*")


def quiet_libraries() -> None:
    """Lightning's info lines (devices, tips, model summary) off; third-party deprecation warnings off."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in NOISY_WARNINGS:
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", message=message, category=category)
    try:
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", category=PossibleUserWarning)  # e.g. "num_workers may be a bottleneck"
    except ImportError:
        pass


def on_terminal() -> bool:
    """Whether stderr (where progress goes) is a terminal rather than a file or a pipe."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_callback(enabled: bool) -> Callback | None:
    """A progress bar on a terminal, :class:`EpochLines` elsewhere, nothing when ``train.progress`` is off."""
    if not enabled:
        return None
    if on_terminal():
        from lightning.pytorch.callbacks import TQDMProgressBar

        return TQDMProgressBar()
    return EpochLines()


class EpochLines(Callback):
    """One line per finished epoch: ``epoch 3 · step 1116 · loss 0.912 · val mIoU 0.421 · val aAcc 0.889 · 212 s``."""

    def __init__(self, stream: Any = None):
        self.stream = stream
        self._started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        values = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch}", f"step {trainer.global_step}"]
        for key, label in (("train_loss", "loss"), ("val_loss", "val loss"), ("val_mIoU", "val mIoU")):
            if key in values:
                parts.append(f"{label} {float(values[key]):.3f}")
        if "val_acc" in values:
            parts.append(f"val aAcc {float(values['val_acc']):.3f}")
        parts.append(f"{time.monotonic() - self._started:.0f} s")
        print(" · ".join(parts), file=self.stream or sys.stdout, flush=True)
