"""The time budget's plan follows the pace of each epoch (whole-photo epochs step slower than crop epochs)."""

from __future__ import annotations

from types import SimpleNamespace

from lightning.pytorch.callbacks import Timer

from cityseg.config import Config
from cityseg.optim import LRSchedule
from cityseg.training import BudgetPlanner
from cityseg.training.trainer import budget_planner, make_callbacks


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_plan_is_redone_at_each_epochs_own_pace(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("cityseg.training.budget.time.monotonic", clock)
    timer = type("T", (Timer,), {"time_elapsed": lambda self, stage="train": clock.now})(duration="00:00:16:40")
    trainer = SimpleNamespace(
        callbacks=[timer],
        strategy=SimpleNamespace(broadcast=lambda value: value),
        global_step=0,
        estimated_stepping_batches=100_000,
        num_training_batches=100,
        num_val_batches=[0],
        should_stop=False,
    )
    module = SimpleNamespace(lr_schedule=LRSchedule("poly", 100_000), config=None)
    trainer.lightning_module = module
    planner = BudgetPlanner(budget_s=1000.0, probe_steps=4)
    planner.on_train_start(trainer, module)

    def steps(count: int, seconds: float) -> None:
        for _ in range(count):
            clock.now += seconds
            trainer.global_step += 1
            planner.on_train_batch_end(trainer, module)

    planner.on_train_epoch_start(trainer, module)
    steps(5, 1.0)  # the probe: 1 s a step, 995 s left
    assert planner.planned_steps == 5 + 995
    steps(95, 1.0)
    planner.on_train_epoch_end(trainer, module)
    assert planner.planned_steps == 1000  # one epoch at 1 s a step: the same plan
    planner.on_train_epoch_start(trainer, module)
    steps(3, 2.0)
    assert planner.planned_steps == 1000  # not yet: 4 steps into the epoch
    steps(1, 2.0)  # 4 steps at 2 s: 892 s left at 2 s a step
    assert planner.planned_steps == 104 + 446
    assert module.lr_schedule.total_steps == planner.planned_steps


def test_the_trainer_runs_the_very_budget_the_data_module_is_given(tmp_path):
    assert budget_planner(Config()) is None  # no train.budget_minutes: no budget, no plan
    config = Config()
    config.override(["train.budget_minutes=2", "train.budget_probe_steps=7"])
    budget = budget_planner(config)
    assert (budget.budget_s, budget.probe_steps) == (120, 7)
    callbacks = make_callbacks(config, tmp_path, budget)
    assert [c for c in callbacks if isinstance(c, BudgetPlanner)] == [budget]  # one object: its plan is the one read
    assert any(isinstance(c, Timer) for c in callbacks)  # the hard limit beside it
    built = make_callbacks(config, tmp_path)  # none given: the config's own, as before
    assert sum(isinstance(c, BudgetPlanner) for c in built) == 1
