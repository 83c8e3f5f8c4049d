"""The Lightning Trainer of a run: threads, callbacks (checkpoints, early stopping, budget, EMA) and loggers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer

from cityseg.config import Config
from cityseg.devices import configure_threads  # noqa: F401  (re-exported: the trainer's processes use it)
from cityseg.errors import CitysegError, first_line
from cityseg.training.budget import BudgetPlanner, StepLimit
from cityseg.training.checkpoints import BEST_CHECKPOINT, CHECKPOINTS_DIR, AtomicCheckpointIO
from cityseg.training.console import on_terminal, progress_callback, quiet_libraries


def budget_planner(config: Config) -> BudgetPlanner | None:
    """The run's time budget planner, or None without ``train.budget_minutes``.

    Built once by the caller and handed both to :func:`make_trainer` (it runs as a callback) and to the
    :class:`~cityseg.training.data.SegDataModule` (which reads its plan as a ``StepPlan``).
    """
    train = config.train
    return BudgetPlanner(train.budget_minutes * 60, train.budget_probe_steps) if train.budget_minutes > 0 else None


def make_callbacks(config: Config, run_dir: Path, budget: BudgetPlanner | None = None) -> list[Callback]:
    """Best and last checkpoints, early stopping, the progress bar, the time budget and weight averaging.

    Args:
        config: the run's settings (``train.*``).
        run_dir: the run folder; checkpoints go to its ``checkpoints/``.
        budget: the run's :func:`budget_planner`, shared with the data module; when None, one is built here
            from ``train.budget_minutes`` (if set) that nothing else sees.
    """
    train = config.train
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / CHECKPOINTS_DIR,
            filename=BEST_CHECKPOINT,
            monitor=train.monitor,
            mode=train.monitor_mode,
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
            # a resumed run rewrites its own best.ckpt and last.ckpt (atomically): with Lightning's counter, a run
            # resumed from a folder moved since wrote best-v1.ckpt and last-v1.ckpt beside them, and the run's
            # final weights were lost
            enable_version_counter=False,
        ),
        # checked when a validation ends, where its metrics always are: a run resumed from a checkpoint written
        # at an epoch's last validation ends that epoch with no validation of its own
        EarlyStopping(
            monitor=train.monitor, mode=train.monitor_mode, patience=train.patience, check_on_train_epoch_end=False
        ),
    ]
    progress = progress_callback(train.progress)
    if progress is not None:
        callbacks.append(progress)
    if train.max_steps > 0:
        callbacks.append(StepLimit())
    budget = budget if budget is not None else budget_planner(config)
    if budget is not None:
        callbacks += [Timer(duration=timedelta(seconds=budget.budget_s), interval="step"), budget]
    if train.ema_decay > 0:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        # validation, test and the saved model use the averaged weights; checkpoints keep both
        callbacks.append(EMAWeightAveraging(decay=train.ema_decay, update_starting_at_step=train.ema_start_step))
    return callbacks


def _loggers(run_dir: Path) -> list:
    """CSV logs always (history.csv is built from them); TensorBoard's too where the extra is installed."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from cityseg.extras import available

    loggers = [CSVLogger(run_dir, name="csv")]
    if available("tensorboard"):
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    return loggers


def make_trainer(config: Config, run_dir: Path, budget: BudgetPlanner | None = None, **overrides: Any) -> L.Trainer:
    """The Lightning Trainer of a run: devices, precision, loggers and callbacks all from ``config``.

    Args:
        config: the run's settings.
        run_dir: the run folder (checkpoints and logs).
        budget: the run's :func:`budget_planner` (see :func:`make_callbacks`).
        **overrides: passed on to ``lightning.Trainer``, replacing what the config says.
    """
    train = config.train
    devices: int | str = int(train.devices) if str(train.devices).isdigit() else train.devices
    strategy = train.strategy
    if strategy == "ddp" and config.model.encoder_depth > 0:
        strategy = "ddp_find_unused_parameters_true"  # smp keeps the unused deeper stages of a cut encoder
    options: dict[str, Any] = {
        "max_epochs": train.max_epochs,
        "max_steps": train.max_steps if train.max_steps > 0 else -1,
        # the train loader is rebuilt each epoch only when its transform can change (augment.final_epochs)
        "reload_dataloaders_every_n_epochs": 1 if config.augment.final_epochs > 0 else 0,
        "accelerator": train.accelerator,
        "devices": devices,
        "num_nodes": train.num_nodes,
        "strategy": strategy,
        "precision": train.precision,
        "callbacks": make_callbacks(config, run_dir, budget),
        "logger": _loggers(run_dir),
        "log_every_n_steps": train.log_every_n_steps,
        "enable_progress_bar": train.progress and on_terminal(),  # off a terminal: EpochLines instead
        "enable_model_summary": False,  # the run's one-line summary says what a user needs
        "default_root_dir": run_dir,
        "use_distributed_sampler": False,  # SegDataModule shards the data itself, without repeating images
        "plugins": [AtomicCheckpointIO()],  # a kill or a full disk never leaves a truncated checkpoint
    }
    options.update(overrides)
    quiet_libraries()
    try:
        return L.Trainer(**options)
    except (ValueError, RuntimeError) as exc:  # e.g. an accelerator this machine lacks
        raise CitysegError(
            f"cannot set up training: {first_line(exc)}; check train.accelerator/devices/strategy"
        ) from None
