"""The time budget: fit a run, validation included, into ``train.budget_minutes`` of wall-clock time."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer


class StepLimit(Callback):
    """Stop at ``trainer.max_steps`` through ``should_stop``, so the last steps are validated and checkpointed.

    Lightning ends a run at ``max_steps`` without validating when that falls inside an epoch: the best and
    last checkpoints would then miss the final steps, those of the lowest learning rate.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class BudgetPlanner(Callback):
    """End training when ``budget_s`` seconds are spent, validation included, with the LR schedule fitted to it.

    The approach, kept simple on purpose:

    1. After ``probe_steps`` training steps (the first step, which warms up, is not timed) the pace is
       measured; one validation batch is assumed to cost a third of a training step (forward only; more
       when training on crops smaller than the validation images) until a real validation has been
       timed. The steps that fit in the remaining time at that pace become the schedule's length (never
       more than ``max_epochs`` worth), so the LR decays to 0 as time runs out.
    2. After each epoch the plan is redone from the measured epoch time (training + validation), and again
       ``probe_steps`` steps into the next epoch from that epoch's own pace, since the pace can change
       between epochs (``augment.final_epochs`` trains the last ones on whole photos, slower steps).
    3. Training stops once the time left is less than one validation, so the final validation still
       fits in the budget; Lightning validates when asked to stop, and ModelCheckpoint keeps the best.
       At an epoch's end (just validated) it stops if fewer than a few steps would fit before that.

    Lightning's :class:`~lightning.pytorch.callbacks.Timer` (added beside this) is the hard limit, and its
    elapsed time, saved in checkpoints, makes the budget span a resumed run too.
    """

    def __init__(self, budget_s: float, probe_steps: int = 20):
        self.budget_s = budget_s
        self.probe_steps = max(1, probe_steps)
        self.planned_steps: int | None = None  # the schedule length last planned (for the run's record)
        self._steps = 0
        self._probe_start = 0.0
        self._val_started = 0.0
        self._val_seconds: float | None = None  # last measured validation round
        self._epoch_started = 0.0
        self._epoch_start_step = 0

    def _elapsed(self, trainer: L.Trainer) -> float:
        timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
        return timer.time_elapsed("train")

    def _val_estimate(self, trainer: L.Trainer, step_seconds: float) -> float:
        if self._val_seconds is not None:
            return self._val_seconds
        # forward only (a third of a step), on whole images rather than training crops
        config = getattr(trainer.lightning_module, "config", None)
        pixels = 1.0
        if config is not None and config.augment.enabled and min(config.augment.crop) > 0:
            pixels = (config.data.size[0] * config.data.size[1]) / (config.augment.crop[0] * config.augment.crop[1])
        return sum(trainer.num_val_batches) * step_seconds / 3 * pixels

    def _plan(self, trainer: L.Trainer, module: L.LightningModule, seconds_per_step: float) -> None:
        """Fit the schedule to the steps that ``seconds_per_step`` (validation amortised) leaves room for."""
        remaining = self.budget_s - self._elapsed(trainer)
        fit = trainer.global_step + max(0, int(remaining / max(seconds_per_step, 1e-6)))
        # every process must follow rank 0's plan: different learning rates would pull the replicas apart
        self.planned_steps = trainer.strategy.broadcast(max(1, min(int(trainer.estimated_stepping_batches), fit)))
        if module.lr_schedule is not None:
            module.lr_schedule.total_steps = self.planned_steps

    def _plan_at_pace(self, trainer: L.Trainer, module: L.LightningModule, step_seconds: float) -> None:
        """Plan from the time of one training step, a validation round amortised over an epoch's steps."""
        per_epoch = max(1, trainer.num_training_batches)
        self._plan(trainer, module, step_seconds + self._val_estimate(trainer, step_seconds) / per_epoch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.monotonic()
        self._epoch_start_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._steps += 1
        now = time.monotonic()
        if self._steps == 1:
            self._probe_start = now
        elif self._steps == 1 + self.probe_steps:
            self._plan_at_pace(trainer, pl_module, (now - self._probe_start) / self.probe_steps)
        step_seconds = (now - self._epoch_started) / max(1, trainer.global_step - self._epoch_start_step)
        if self._steps > 1 + self.probe_steps and trainer.global_step - self._epoch_start_step == self.probe_steps:
            self._plan_at_pace(trainer, pl_module, step_seconds)  # this epoch's own pace
        out_of_time = self._elapsed(trainer) + self._val_estimate(trainer, step_seconds) >= self.budget_s
        if trainer.strategy.broadcast(out_of_time):  # rank 0 decides, so all processes stop at the same step
            if self.planned_steps is None:  # the budget ran out before the probe: record what was measured
                self._plan(trainer, pl_module, step_seconds)
            trainer.should_stop = True  # Lightning runs the last validation, then stops

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_seconds = time.monotonic() - self._val_started

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = trainer.global_step - self._epoch_start_step
        if steps == 0 or trainer.should_stop:
            return
        seconds_per_step = (time.monotonic() - self._epoch_started) / steps  # validation amortised
        self._plan(trainer, pl_module, seconds_per_step)
        # the epoch just ended with a validation: stop here if a few more steps and another validation
        # would not fit, rather than take a step or two and validate almost the same weights again
        needed = self._val_estimate(trainer, seconds_per_step) + 3 * seconds_per_step
        if trainer.strategy.broadcast(self._elapsed(trainer) + needed >= self.budget_s):
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"planned_steps": self.planned_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.planned_steps = state_dict.get("planned_steps")
