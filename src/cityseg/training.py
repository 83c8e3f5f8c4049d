"""Training: a LightningModule around an smp network, the run folder, and ``train(config)``.

Lightning does the loop, checkpointing (best and last), early stopping, logging (CSV and TensorBoard),
the progress bar, seeding, precision and devices; this module adds only what is ours:

* :class:`SegModule`: :class:`SegmentationLoss` (cross-entropy on integer labels, ignore index 255,
  optionally class-weighted and plus Dice), the optimiser and per-step LR schedule from the config, and
  accuracy/mIoU through :class:`cityseg.evaluation.SegmentationMetrics` (a torchmetrics confusion matrix,
  so values are exact over the whole set and sync across processes).
* :class:`BudgetPlanner`: fits the run to ``train.budget_minutes`` (see its docstring).
* :func:`train`: splits, labels, fits, tests the best checkpoint and writes the run folder::

    runs/<timestamp>/
        config.yaml        the one config that made the run (also inside every checkpoint as hparams)
        splits.json        train/val/test image lists
        labeller.json      how masks became class indices (K-Means centres, if any), reused by evaluate
        checkpoints/       best.ckpt and last.ckpt (Lightning ModelCheckpoint)
        csv/, tensorboard/ Lightning's loggers
        history.csv        one clean row per epoch, built from the CSV logger
        model/             models.save_model: weights, smp config, model card, cityseg.json
        metrics.json       test-set metrics of the best checkpoint
        plots/, report.html
    runs/latest -> <timestamp>

Only the global-rank-0 process writes run files, and the other processes wait for it before returning,
so the same code runs under DDP (``--strategy ddp --devices N``): the run folder is named once and
passed on in ``CITYSEG_RUN_DIR``, the budget plan is rank 0's, and test images are each scored once.

Example:
    >>> config = Config.from_yaml("default")
    >>> config.data.root = "data/cityscapes_pairs"
    >>> run_dir = train(config)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.utilities import rank_zero_only

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text

RUN_DIR_ENV = "CITYSEG_RUN_DIR"  # the run folder, passed to the other processes of a multi-process run
HISTORY_COLUMNS = (  # history.csv, one row per epoch; plots.plot_history draws the pairs of train_/val_ curves
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "train_acc",
    "val_acc",
    "train_mIoU",
    "val_mIoU",
    "val_mAcc",
    "epoch_seconds",
)


# ---- the learning-rate schedule ----------------------------------------------------------------------


class LRSchedule:
    """Per-step LR factor: optional linear warm-up, then ``cosine`` or ``poly`` decay to 0 over ``total_steps``.

    A plain object (not a closure) so ``LambdaLR`` saves ``total_steps`` in checkpoints, and so the
    budget planner can shorten or lengthen the decay while training runs.

    Example:
        >>> schedule = LRSchedule("cosine", total_steps=100)
        >>> schedule(0), round(schedule(50), 3), schedule(100)
        (1.0, 0.5, 0.0)
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, power: float = 0.9):
        self.kind = kind  # none | cosine | poly
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = warmup_steps
        self.power = power  # poly exponent, as in DeepLab

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return 0.01 + 0.99 * step / self.warmup_steps
        if self.kind == "none":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return (1.0 - progress) ** self.power  # poly


# ---- the loss ---------------------------------------------------------------------------------------


class SegmentationLoss(torch.nn.Module):
    """Cross-entropy on integer labels (sparse categorical cross-entropy), ``IGNORE_INDEX`` left out.

    Args:
        kind: ``ce``, or ``ce+dice`` to add smp's multiclass Dice loss (helps small classes).
        class_weights: optional (C,) weights of the cross-entropy terms.

    Shape:
        logits (B, C, H, W), masks (B, H, W) int64 -> scalar.
    """

    def __init__(self, kind: str = "ce", class_weights: Sequence[float] | None = None):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
        self.dice = None
        if kind == "ce+dice":
            from segmentation_models_pytorch.losses import DiceLoss

            self.dice = DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        elif kind != "ce":
            raise CitysegError(f"unknown loss {kind!r}; choose ce or ce+dice")

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits, masks)
        if self.dice is not None:
            loss = loss + self.dice(logits, masks)
        return loss


def class_weights(paths: Sequence[Path], label_cache, num_classes: int) -> list[float]:
    """ENet-style weights ``1 / ln(1.02 + share)`` from the classes' pixel shares in ``paths`` (the train split).

    Rare classes weigh up to ~50x a dominant one; weights are scaled to average 1 over the classes present
    (absent classes get 1: they never occur as a target).
    """
    import numpy as np

    counts = np.zeros(num_classes, dtype=np.int64)
    for path in paths:
        counts += np.bincount(label_cache.get(path).ravel(), minlength=256)[:num_classes]
    present = counts > 0
    weights = 1.0 / np.log(1.02 + counts / max(1, counts.sum()))
    weights = np.where(present, weights / weights[present].mean() if present.any() else 1.0, 1.0)
    return [float(w) for w in weights]


# ---- the LightningModule ---------------------------------------------------------------------------


def network_options(config: Config) -> dict[str, Any]:
    """smp keyword arguments for ``model.encoder_depth`` and ``model.decoder_width`` (0 keeps smp's defaults).

    U-Net-like decoders take one width per block: the width, halved at each block but never below 8
    (256 gives smp's default 256, 128, 64, 32, 16); other decoders take a single number.
    """
    import inspect

    import segmentation_models_pytorch as smp

    model = config.model
    options: dict[str, Any] = {}
    if model.encoder_depth > 0:
        options["encoder_depth"] = model.encoder_depth
    arch_class = smp.MODEL_ARCHITECTURES_MAPPING.get(model.arch.lower())
    parameters = inspect.signature(arch_class).parameters if arch_class else {}
    default = parameters["decoder_channels"].default if "decoder_channels" in parameters else None
    if model.decoder_width == 0 and model.encoder_depth > 0 and isinstance(default, tuple | list):
        # smp's default widths are for 5 blocks; a shallower encoder keeps the first ones
        options["decoder_channels"] = tuple(default[: model.encoder_depth])
    if model.decoder_width > 0:
        if "decoder_channels" not in parameters:
            raise CitysegError(f"architecture {model.arch} has no decoder width to set; leave model.decoder_width 0")
        if isinstance(default, tuple | list):
            depth = model.encoder_depth or len(default)
            options["decoder_channels"] = tuple(max(8, model.decoder_width >> i) for i in range(depth))
        else:
            options["decoder_channels"] = model.decoder_width
    return options


class SegModule(L.LightningModule):
    """An smp segmentation network with the training logic of a cityseg run.

    Args:
        config: the run's :class:`~cityseg.config.Config` (or its dict, as stored in checkpoints).
        class_names: the classes the network predicts (index ``i`` is class ``i``).
        pretrained: load ``model.encoder_weights`` into the encoder; ``False`` when weights come from a
            checkpoint anyway (resuming, evaluating), so nothing is downloaded.
        class_weights: per-class cross-entropy weights (``optim.class_weights``; see :func:`class_weights`).

    Shape:
        ``forward``: images (B, 3, H, W) float -> logits (B, C, H, W); softmax is applied at prediction.

    Example:
        >>> module = SegModule(config, ["road", "sky"])  # doctest: +SKIP
        >>> module(torch.zeros(1, 3, 64, 64)).shape  # doctest: +SKIP
        torch.Size([1, 2, 64, 64])
    """

    def __init__(
        self,
        config: Config | dict,
        class_names: Sequence[str],
        pretrained: bool = True,
        class_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        from cityseg.evaluation import SegmentationMetrics
        from cityseg.models import create_model, encoder_weights_used

        self.config = config if isinstance(config, Config) else Config.from_dict(config)
        self.class_names = list(class_names)
        # what Lightning stores in every checkpoint (hparams): the whole config and the class list
        hparams = {"config": self.config.to_dict(), "class_names": self.class_names}
        if class_weights is not None:
            hparams["class_weights"] = [float(w) for w in class_weights]
        self.save_hyperparameters(hparams)
        model = self.config.model
        self.net = create_model(
            arch=model.arch,
            encoder=model.encoder,
            num_classes=len(self.class_names),
            encoder_weights=model.encoder_weights if pretrained else "none",
            **network_options(self.config),
        )
        # what filled the encoder before training; kept in checkpoints so a resumed run still knows
        self.encoder_weights_used = encoder_weights_used(self.net) if pretrained else model.encoder_weights
        if self.config.train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.criterion = SegmentationLoss(self.config.optim.loss, class_weights)
        n = len(self.class_names)
        # one confusion-matrix metric per stage, so validation never mixes with the training epoch's counts
        self.train_metrics = SegmentationMetrics(n, ignore_index=IGNORE_INDEX)
        self.val_metrics = SegmentationMetrics(n, ignore_index=IGNORE_INDEX)
        self.test_metrics = SegmentationMetrics(n, ignore_index=IGNORE_INDEX)
        self.lr_schedule: LRSchedule | None = None  # made in configure_optimizers
        self.test_report: dict[str, Any] | None = None  # set at the end of a test run (metrics_report)
        self._epoch_started = 0.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)  # (B, C, H, W) logits

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        images, masks = batch  # (B, 3, h, w) float, (B, H, W) int64
        logits = self(images) if stage == "train" else self._eval_logits(images)  # (B, C, h, w)
        if logits.shape[-2:] != masks.shape[-2:]:
            # evaluation masks keep the labels' own size: score the upsampled logits, never resized labels
            logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        getattr(self, f"{stage}_metrics").update(logits.argmax(dim=1), masks)  # (B, H, W) predicted classes
        # images with any labelled pixel: a batch of only padding items (see datasets.ShardSampler) has none,
        # and cross-entropy over zero pixels is 0/0
        labelled = int((masks != IGNORE_INDEX).flatten(1).any(dim=1).sum())
        loss = self.criterion(logits, masks) if labelled else logits.sum() * 0.0
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=labelled, sync_dist=True)
        return loss

    def _eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Validation/test logits: one pass over the image, or averaged sliding windows (``data.eval_window``),
        averaged with the mirror image's (``data.eval_flip``)."""
        if self.config.data.eval_flip:
            from cityseg.predict import flip_averaged_logits

            return flip_averaged_logits(self._unflipped_eval_logits, images)
        return self._unflipped_eval_logits(images)

    def _unflipped_eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        window = tuple(self.config.data.eval_window)
        if min(window) <= 0:
            return self(images)
        from cityseg.predict import sliding_window_logits, window_stride

        stride = window_stride(window, self.config.data.eval_overlap)
        return sliding_window_logits(self, images, window, stride, len(self.class_names))  # (B, C, h, w)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _log_epoch_metrics(self, stage: str) -> dict[str, Any]:
        metric = getattr(self, f"{stage}_metrics")
        values = metric.compute()  # summed over the whole set, and across processes, by torchmetrics
        metric.reset()
        for name, key in (("acc", "aAcc"), ("mIoU", "mIoU"), ("mAcc", "mAcc")):
            # already summed over all processes; sync_dist only tells Lightning so (it averages equal values)
            self.log(f"{stage}_{name}", float(values[key]), prog_bar=stage == "val" and name != "mAcc", sync_dist=True)
        return values

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.monotonic()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        # train + validation wall time of this epoch (validation runs inside the training epoch)
        self.log("epoch_seconds", time.monotonic() - self._epoch_started)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        from cityseg.evaluation import metrics_report

        values = self._log_epoch_metrics("test")
        self.test_report = metrics_report(values["confmat"].cpu().numpy(), self.class_names)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cityseg_encoder_weights"] = self.encoder_weights_used

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.encoder_weights_used = checkpoint.get("cityseg_encoder_weights", self.encoder_weights_used)

    def on_train_start(self) -> None:
        # the schedule spans the epochs still configured (a resumed run may have been given more)
        if self.lr_schedule is not None:
            self.lr_schedule.total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        # every process built the network from the same seed (DDP also broadcasts rank 0's weights); from
        # here on each gets its own random stream, so augmentations done in the training process differ
        # between processes (DataLoader workers already get distinct streams from seed_everything(workers=True))
        if self.trainer.world_size > 1:
            L.seed_everything(self.config.train.seed + self.global_rank, workers=True, verbose=False)

    def configure_optimizers(self):
        optim = self.config.optim
        params = [p for p in self.net.parameters() if p.requires_grad]
        if optim.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
        elif optim.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
        elif optim.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
        else:
            raise CitysegError(f"unknown optimizer {optim.optimizer!r}; choose adam, adamw or sgd")
        if optim.schedule == "none" and optim.warmup_steps == 0:
            return optimizer
        self.lr_schedule = LRSchedule(
            optim.schedule, int(self.trainer.estimated_stepping_batches), warmup_steps=optim.warmup_steps
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ---- the time budget --------------------------------------------------------------------------------


class BudgetPlanner(Callback):
    """End training when ``budget_s`` seconds are spent, validation included, with the LR schedule fitted to it.

    The approach, kept simple on purpose:

    1. After ``probe_steps`` training steps (the first step, which warms up, is not timed) the pace is
       measured; one validation batch is assumed to cost a third of a training step (forward only; more
       when training on crops smaller than the validation images) until a real validation has been
       timed. The steps that fit in the remaining time at that pace become the schedule's length (never
       more than ``max_epochs`` worth), so the LR decays to 0 as time runs out.
    2. After each epoch the plan is redone from the measured epoch time (training + validation).
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

    def _plan(self, trainer: L.Trainer, module: SegModule, seconds_per_step: float) -> None:
        """Fit the schedule to the steps that ``seconds_per_step`` (validation amortised) leaves room for."""
        remaining = self.budget_s - self._elapsed(trainer)
        fit = trainer.global_step + max(0, int(remaining / max(seconds_per_step, 1e-6)))
        # every process must follow rank 0's plan: different learning rates would pull the replicas apart
        self.planned_steps = trainer.strategy.broadcast(max(1, min(int(trainer.estimated_stepping_batches), fit)))
        if module.lr_schedule is not None:
            module.lr_schedule.total_steps = self.planned_steps

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
            step_seconds = (now - self._probe_start) / self.probe_steps
            per_epoch = max(1, trainer.num_training_batches)
            amortised = step_seconds + self._val_estimate(trainer, step_seconds) / per_epoch
            self._plan(trainer, pl_module, amortised)
        step_seconds = (now - self._epoch_started) / max(1, trainer.global_step - self._epoch_start_step)
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


# ---- run folders ------------------------------------------------------------------------------------


def new_run_dir(runs_dir: str | os.PathLike) -> Path:
    """Create ``runs_dir/<timestamp>`` (with a suffix if that second is taken) and return it."""
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = runs / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CitysegError(f"cannot create a new run folder in {runs}; clean it up")


def update_latest(run_dir: Path) -> None:
    """Point ``runs/latest`` at ``run_dir``: a relative symlink swapped in atomically, else a text file."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)  # atomic: readers see the old or the new run, never neither
    except OSError:
        tmp.unlink(missing_ok=True)
        if link.is_symlink() or link.is_dir():
            try:
                link.unlink()
            except OSError:
                return
        atomic_write_text(link, run_dir.name + "\n")


def resolve_run(path: str | os.PathLike) -> Path:
    """A run folder from its path, a ``latest`` symlink, or a ``latest`` text file naming one."""
    run = Path(path)
    if run.is_file() and run.name == "latest":  # the fallback when symlinks are not available
        run = run.parent / run.read_text().strip()
    if not run.is_dir():
        raise CitysegError(f"run folder {path} does not exist; pass a folder under runs/ (or runs/latest)")
    return run.resolve()


def write_history(run_dir: Path) -> Path:
    """Build ``history.csv`` (one row per epoch, columns :data:`HISTORY_COLUMNS`) from the CSV logger's files.

    Lightning writes one metrics.csv per session under ``csv/version_N`` (a resumed run adds one), with
    train and validation values on separate rows. Rows are merged by epoch, later sessions winning.
    """
    epochs: dict[int, dict[str, str]] = {}
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for metrics_file in versions:
        with open(metrics_file, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("epoch"):
                    continue
                merged = epochs.setdefault(int(float(row["epoch"])), {})
                merged.update({key: value for key, value in row.items() if value not in ("", None)})
    lines = [",".join(HISTORY_COLUMNS)]
    for epoch in sorted(epochs):
        values = epochs[epoch]
        if "train_loss" not in values:
            continue  # an epoch interrupted before it finished
        values["epoch"] = str(epoch)
        lines.append(",".join(values.get(column, "") for column in HISTORY_COLUMNS))
    path = run_dir / "history.csv"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ---- train ------------------------------------------------------------------------------------------


def configure_threads(config: Config) -> int:
    """Give each process its share of the CPU cores (2 cores and 2 threads each in 2 processes would thrash)."""
    threads = config.train.threads
    if threads <= 0:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        # processes on this machine: set by the launcher in each of them; before the launch, CPU training
        # with devices=N will start N of them
        devices = str(config.train.devices)
        planned = devices if devices.isdigit() and config.train.accelerator == "cpu" else "1"
        local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", planned)))
        threads = max(1, cores // local_processes)
    torch.set_num_threads(threads)
    return threads


def _callbacks(config: Config, run_dir: Path) -> list[Callback]:
    from lightning.pytorch.callbacks import TQDMProgressBar

    train = config.train
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=train.monitor,
            mode=train.monitor_mode,
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
        ),
        EarlyStopping(monitor=train.monitor, mode=train.monitor_mode, patience=train.patience),
    ]
    if train.progress:
        callbacks.append(TQDMProgressBar())
    if train.budget_minutes > 0:
        budget = train.budget_minutes * 60
        callbacks += [
            Timer(duration=timedelta(seconds=budget), interval="step"),
            BudgetPlanner(budget, train.budget_probe_steps),
        ]
    return callbacks


def make_trainer(config: Config, run_dir: Path, **overrides: Any) -> L.Trainer:
    """The Lightning Trainer of a run: devices, precision, loggers and callbacks all from ``config``."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    train = config.train
    devices: int | str = int(train.devices) if str(train.devices).isdigit() else train.devices
    strategy = train.strategy
    if strategy == "ddp" and config.model.encoder_depth > 0:
        strategy = "ddp_find_unused_parameters_true"  # smp keeps the unused deeper stages of a cut encoder
    options: dict[str, Any] = {
        "max_epochs": train.max_epochs,
        "accelerator": train.accelerator,
        "devices": devices,
        "num_nodes": train.num_nodes,
        "strategy": strategy,
        "precision": train.precision,
        "callbacks": _callbacks(config, run_dir),
        "logger": [CSVLogger(run_dir, name="csv"), TensorBoardLogger(run_dir, name="tensorboard")],
        "log_every_n_steps": train.log_every_n_steps,
        "enable_progress_bar": train.progress,
        "enable_model_summary": train.progress,
        "default_root_dir": run_dir,
        "use_distributed_sampler": False,  # SegDataModule shards the data itself, without repeating images
    }
    options.update(overrides)
    try:
        return L.Trainer(**options)
    except (ValueError, RuntimeError) as exc:  # e.g. an accelerator this machine lacks
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CitysegError(f"cannot set up training: {message}; check train.accelerator/devices/strategy") from None


def _resumed_config(run_dir: Path, config: Config | None) -> Config:
    saved = Config.from_yaml(run_dir / "config.yaml")
    return saved if config is None else config


def train(config: Config | None, resume: str | os.PathLike | None = None, callbacks: Sequence[Callback] = ()) -> Path:
    """Train a model as ``config`` says, test its best checkpoint, and write the run folder.

    Args:
        config: the run's settings; ``data.root`` must name the dataset. When resuming, pass the run's own
            config (``Config.from_yaml(RUN/config.yaml)``, with any overrides such as more epochs) or
            ``None`` to use it unchanged.
        resume: a run folder (or ``runs/latest``) to continue from its ``checkpoints/last.ckpt``.
        callbacks: extra Lightning callbacks (tests use one to interrupt a run).

    Returns:
        The run folder (``train.runs_dir/<timestamp>``, or the resumed one).

    Raises:
        CitysegError: bad dataset, settings, or a resumed run without a checkpoint.
    """
    if resume is not None:
        run_dir = resolve_run(resume)
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise CitysegError(f"run {run_dir} has no checkpoints/last.ckpt to resume from; start a new run instead")
        config = _resumed_config(run_dir, config)
    elif config is None:
        raise CitysegError("train needs a config (or a run to resume)")

    # the same seed in every process gives identical initial weights; workers=True derives a distinct
    # augmentation stream for each DataLoader worker of each process from it
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    configure_threads(config)

    # one run folder shared by every process of a multi-process run: rank 0 names it, the others inherit it
    inherited = os.environ.get(RUN_DIR_ENV)
    if resume is None:
        run_dir = Path(inherited) if inherited else _on_rank_zero_new_run_dir(config.train.runs_dir)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        return _train_in(run_dir, config, resume is not None, callbacks)
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


def _train_in(run_dir: Path, config: Config, resuming: bool, callbacks: Sequence[Callback]) -> Path:
    from cityseg.datasets import SegDataModule, load_splits, prepare_labels, save_splits, split_dataset

    splits_file = run_dir / "splits.json"
    if resuming and splits_file.is_file():
        splits, note = load_splits(splits_file, config.data.root or None), "the resumed run's splits (splits.json)"
    else:
        splits, note = split_dataset(config)
    _say(f"cityseg: {note}")
    _say(f"cityseg: {', '.join(f'{len(v)} {k}' for k, v in splits.items())} images; run folder {run_dir}")

    labeller = _load_labeller(run_dir) if resuming else None
    splits, label_cache = prepare_labels(config, splits, labeller=labeller, progress=config.train.progress)
    class_set = label_cache.labeller.class_set
    if rank_zero_only.rank == 0:
        config.to_yaml(run_dir / "config.yaml")
        save_splits(splits, splits_file, config.data.root, note)
        _save_labeller(label_cache.labeller, run_dir)

    datamodule = SegDataModule(config, splits, label_cache)
    weights = class_weights(splits["train"], label_cache, class_set.num_classes) if config.optim.class_weights else None
    module = SegModule(config, class_set.names, pretrained=not resuming, class_weights=weights)
    trainer = make_trainer(config, run_dir)
    trainer.callbacks.extend(callbacks)
    started = time.monotonic()
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resuming else None)
    fit_seconds = time.monotonic() - started
    run_dir = Path(trainer.strategy.broadcast(str(run_dir)))  # rank 0's folder, in every process

    # test the best checkpoint (the last weights if no validation ever ran)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    if trainer.is_global_zero:
        finish_run(run_dir, config, module, datamodule, class_set, fit_seconds, trainer)
    trainer.strategy.barrier()  # the other processes return only once the run folder is complete
    return run_dir


@rank_zero_only
def _say(message: str) -> None:
    print(message, flush=True)


def _on_rank_zero_new_run_dir(runs_dir: str) -> Path:
    if rank_zero_only.rank == 0:
        return new_run_dir(runs_dir)
    # started by an outside launcher (torchrun, srun) rather than by rank 0: this process learns the folder
    # from rank 0 once the Trainer has joined the processes (ModelCheckpoint broadcasts its folder, _train_in
    # the run folder); until then it writes nothing, and never into this placeholder
    return Path(runs_dir) / f".pending-rank{rank_zero_only.rank}"


def _save_labeller(labeller, run_dir: Path) -> None:
    labeller.save(run_dir / "labeller.json")


def _load_labeller(run_dir: Path):
    from cityseg.labels import load_labeller

    path = run_dir / "labeller.json"
    return load_labeller(path) if path.is_file() else None


def finish_run(
    run_dir: Path,
    config: Config,
    module: SegModule,
    datamodule,
    class_set,
    fit_seconds: float,
    trainer: L.Trainer,
) -> dict[str, Any]:
    """Write what a finished run leaves: model/, metrics.json, history.csv, plots/, report.html, runs/latest.

    Returns:
        The test report written to metrics.json (:func:`cityseg.evaluation.metrics_report` plus run facts).
    """
    from cityseg.datasets import normalisation
    from cityseg.models import ModelInfo, save_model

    mean, std = normalisation(config.model.encoder)
    info = ModelInfo.from_class_set(
        config.model.arch,
        config.model.encoder,
        class_set,
        tuple(config.data.size),
        label_method=config.labels.method,
        encoder_weights=module.encoder_weights_used,
        mean=mean,
        std=std,
    )
    checkpoint = trainer.checkpoint_callback
    report = dict(module.test_report or {})
    report.update(
        {
            "split": "test",
            "images": len(datamodule.splits.get("test", [])),
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "monitor": config.train.monitor,
            "best_score": _float(checkpoint.best_model_score) if checkpoint else None,
            "best_checkpoint": Path(checkpoint.best_model_path).name
            if checkpoint and checkpoint.best_model_path
            else None,
            "fit_seconds": round(fit_seconds, 1),
            "encoder_weights": module.encoder_weights_used,
        }
    )
    card = {key: value for key, value in report.items() if key != "confmat"}  # the model card: scores, no matrix
    save_model(module.net, run_dir / "model", info, metrics=card)
    atomic_write_text(run_dir / "metrics.json", json.dumps(report, indent=1) + "\n")
    history = write_history(run_dir)
    write_pictures(run_dir, module, datamodule, class_set, report, history)
    update_latest(run_dir)
    return report


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value.item() if isinstance(value, torch.Tensor) else value)
    return None if math.isnan(value) else value


def write_pictures(run_dir: Path, module: SegModule, datamodule, class_set, report: dict, history: Path | None) -> None:
    """The run's figures in plots/ and its report.html (plots.py and report.py draw them)."""
    from cityseg import plots
    from cityseg.report import write_report

    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    if history is not None:
        with contextlib.suppress(CitysegError):  # no finished epoch to draw (a run stopped in its first epoch)
            plots.plot_history(history, plot_dir)
    if report.get("confmat") is not None:
        plots.plot_confusion(report["confmat"], list(class_set.names), plot_dir / "confusion.png")
    if report.get("per_class"):
        plots.plot_class_iou(report, plot_dir / "class_iou.png")
    photos, truths, preds = predict_examples(module, datamodule, count=4)
    if photos:
        plots.plot_predictions(photos, truths, preds, class_set, plot_dir / "predictions.png")
    rows = label_examples(datamodule, count=3)
    if rows:
        plots.plot_label_figure(rows, class_set, plot_dir / "labels.png")
    write_report(run_dir)


def label_examples(datamodule, count: int = 3) -> list[tuple]:
    """(photo, colour mask, labels) of the first ``count`` training images, for the labelling figure."""
    from cityseg.labels import label_figure_rows

    paths = (datamodule.splits.get("train") or [])[:count]
    return label_figure_rows(paths, datamodule.label_cache, datamodule.config.data.mask_side)


@torch.no_grad()
def predict_examples(module: SegModule, datamodule, count: int = 6):
    """Photos, true labels and predicted labels of the first ``count`` test images, as uint8 arrays."""
    from cityseg.datasets import PairDataset, normalisation
    from cityseg.transforms import eval_transform

    paths = (datamodule.splits.get("test") or datamodule.splits.get("val") or [])[:count]
    raw = PairDataset(paths, datamodule.label_cache, None, datamodule.config.data.mask_side)
    transform = eval_transform(module.config.data.size, *normalisation(module.config.model.encoder))
    module.eval()
    photos, truths, preds = [], [], []
    for index in range(len(raw)):
        photo, truth = raw[index]
        image, _ = transform(photo, truth)
        logits = module(image[None].to(module.device))  # (1, C, h, w)
        logits = F.interpolate(logits, size=truth.shape, mode="bilinear", align_corners=False)
        photos.append(photo)
        truths.append(truth)
        preds.append(logits.argmax(1)[0].byte().cpu().numpy())
    return photos, truths, preds


# ---- evaluate ---------------------------------------------------------------------------------------


def _find_model(target: str | os.PathLike) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) for a run folder, ``runs/latest`` or a model folder."""
    from cityseg.models import INFO_FILE

    path = Path(target)
    if path.is_file() and path.name == "latest":
        path = resolve_run(path)
    if (path / INFO_FILE).is_file():
        run = path.parent if (path.parent / "config.yaml").is_file() else None
        return path, run
    if (path / "model" / INFO_FILE).is_file():
        return path / "model", path
    if path.is_dir() and (path / "config.yaml").is_file():
        raise CitysegError(f"run {path} has no model/ yet (it did not finish); resume it with cityseg train --resume")
    raise CitysegError(f"{target} is neither a run folder nor a model folder (no cityseg.json); check the path")


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    if accelerator not in ("auto", "cpu"):
        raise CitysegError(f"accelerator {accelerator!r} is not available here; use cpu or auto")
    return torch.device("cpu")


def evaluate_run(
    target: str | os.PathLike,
    data: str | os.PathLike | None = None,
    split: str = "test",
    baseline: bool = False,
    batch_size: int | None = None,
    workers: int | None = None,
    accelerator: str | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    flip: bool | None = None,
) -> dict[str, Any]:
    """Score a trained model on one split: what ``cityseg evaluate`` runs.

    The split is the run's own (splits.json) when the data is the run's; for other data, or a bare model
    folder, it is made from the run's config (or the defaults) as :func:`cityseg.datasets.split_dataset` does.
    Labels come from the labeller the run saved (labeller.json), so K-Means classes match the model's.

    Args:
        target: a run folder (``runs/latest``) or a model folder (``runs/<run>/model``).
        data: dataset folder (default: the run's ``data.root``).
        split: ``test`` (default), ``val`` or ``train``.
        baseline: also score the untrained network: same architecture and encoder weights, same init seed.
        batch_size, workers, accelerator: override the run's settings.
        out: folder for metrics.json and plots/ (default: the run folder, else the model folder).
        flip: also segment each mirror image and average the logits (default: the run's ``data.eval_flip``).

    Returns:
        The :func:`~cityseg.evaluation.metrics_report` plus ``split``, ``images``, ``data``, ``model``,
        ``baseline`` (a report, with ``baseline=True``) and ``written`` (the metrics.json path).
    """
    from torch.utils.data import DataLoader

    from cityseg import plots
    from cityseg.datasets import PairDataset, load_splits, prepare_labels, split_dataset
    from cityseg.evaluation import evaluate_model
    from cityseg.labels import load_labeller, make_labeller
    from cityseg.models import load_model
    from cityseg.transforms import eval_transform

    model_dir, run_dir = _find_model(target)
    net, info = load_model(model_dir)
    config = Config.from_yaml(run_dir / "config.yaml") if run_dir else Config()
    if run_dir is None:  # a bare model folder: rebuild what its ModelInfo says
        config.model.arch, config.model.encoder = info.arch, info.encoder
        config.data.size = tuple(info.input_size)
        config.labels.method, config.labels.classes = info.label_method, info.class_set
    for key, value in (("data.root", data), ("data.batch_size", batch_size), ("data.workers", workers)):
        if value is not None:
            config.set(key, value)
    if accelerator is not None:
        config.set("train.accelerator", accelerator)
    if flip is not None:
        config.data.eval_flip = flip
    configure_threads(config)

    saved = run_dir / "splits.json" if run_dir else None
    same_data = (
        saved is not None
        and saved.is_file()
        and (data is None or Path(data).resolve() == Path(json.loads(saved.read_text()).get("root", "")).resolve())
    )
    splits = load_splits(saved, config.data.root or None) if same_data else split_dataset(config)[0]
    if not splits.get(split):
        raise CitysegError(f"the {split} split of {config.data.root} is empty; choose another split or dataset")
    labeller_file = run_dir / "labeller.json" if run_dir else None
    if labeller_file is not None and labeller_file.is_file():
        labeller = load_labeller(labeller_file)
    else:
        labeller = make_labeller(config.labels, splits["train"], config.data.mask_side, config.data.cache_dir or None)
    if tuple(labeller.class_set.names) != tuple(info.names):
        raise CitysegError(
            f"the model predicts {info.num_classes} {info.class_set} classes but the labels are "
            f"{labeller.class_set.num_classes} {labeller.class_set.name} classes; evaluate with the run folder"
        )
    labelled, cache = prepare_labels(config, {split: splits[split]}, labeller, progress=progress)
    paths = labelled[split]
    dataset = PairDataset(paths, cache, eval_transform(info.input_size, info.mean, info.std), config.data.mask_side)
    loader = DataLoader(dataset, batch_size=config.data.batch_size, num_workers=config.data.workers)
    device = _device(config.train.accelerator)
    from cityseg.predict import eval_net

    # as the run validated and tested: sliding windows (data.eval_window), the mirror image (data.eval_flip)
    data_config = config.data
    net = eval_net(net, data_config.eval_window, data_config.eval_overlap, data_config.eval_flip, info.num_classes)
    report, confmat = evaluate_model(net.to(device), loader, info.num_classes, device, info.names, progress)
    if baseline:
        L.seed_everything(config.train.seed, verbose=False)  # the seed train() built the network under
        untrained = SegModule(config, info.names).net.to(device)
        report["baseline"] = evaluate_model(untrained, loader, info.num_classes, device, info.names, progress)[0]
    report.update(
        {
            "split": split,
            "images": len(paths),
            "data": str(config.data.root),
            "model": str(model_dir.resolve()),
            "flip": bool(config.data.eval_flip),  # how it was scored: with the mirror image or without
        }
    )

    out_dir = Path(out) if out else (run_dir or model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = out_dir / "metrics.json"
    previous = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    merged = {**previous, **report}  # keeps the run's facts (epochs, fit time) beside the new scores
    if not baseline:
        merged.pop("baseline", None)
    atomic_write_text(metrics_file, json.dumps(merged, indent=1) + "\n")
    plot_dir = out_dir / "plots"
    plots.plot_confusion(confmat, list(info.names), plot_dir / "confusion.png")
    plots.plot_class_iou(report, plot_dir / "class_iou.png")
    if run_dir is not None and out_dir.resolve() == run_dir.resolve():
        from cityseg.report import write_report

        write_report(run_dir)
    report["written"] = str(metrics_file)
    return report
