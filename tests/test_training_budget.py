"""The time budget (cityseg.training.budget): the plan fits the schedule to the time left, at each epoch's own pace
(whole-photo epochs step slower than crop epochs)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

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


def test_budget_planner_fits_the_schedule_to_the_time_left():
    class FakeTimer:
        def time_elapsed(self, stage):
            return 30.0

    class FakeStrategy:
        def broadcast(self, value):
            return value

    class FakeTrainer:
        strategy = FakeStrategy()
        global_step = 100
        estimated_stepping_batches = 10_000
        callbacks: ClassVar[list] = []

    class FakeModule:
        lr_schedule = LRSchedule("cosine", 10_000)

    trainer, module = FakeTrainer(), FakeModule()
    trainer.callbacks = [type("T", (Timer,), {"time_elapsed": FakeTimer.time_elapsed})(duration="00:00:01:30")]
    planner = BudgetPlanner(budget_s=90.0, probe_steps=5)
    planner._plan(trainer, module, seconds_per_step=0.5)  # 60 s left at 0.5 s a step: 120 more steps
    assert module.lr_schedule.total_steps == 220
    planner._plan(trainer, module, seconds_per_step=0.001)  # never past max_epochs worth of steps
    assert module.lr_schedule.total_steps == 10_000
