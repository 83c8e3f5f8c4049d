"""The LightningModule of a run: an smp network, its loss, optimiser and LR schedule, and its metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.loss_registry import LOSS_TERMS, loss_terms
from cityseg.metrics import SegmentationMetrics, update_confusion
from cityseg.optim import LRSchedule, make_optimizer
from cityseg.training.start import parameter_groups


class SegmentationLoss(torch.nn.Module):
    """The sum of the :data:`~cityseg.loss_registry.LOSS_TERMS` that ``kind`` names, ``IGNORE_INDEX`` left out.

    Args:
        kind: ``ce`` (cross-entropy on integer labels), ``ce+dice`` (plus cityseg's own multiclass Dice term,
            :class:`cityseg.loss_modules.DiceLoss`, which helps small classes), ``ohem+dice`` (cross-entropy over
            the hard pixels only) ...
        class_weights: optional (C,) weights of the cross-entropy terms.
        optim: the run's OptimConfig, for the terms' own settings (OHEM's threshold and share).

    Shape:
        logits (B, C, H, W), masks (B, H, W) int64 -> scalar.
    """

    def __init__(self, kind: str = "ce", class_weights: Sequence[float] | None = None, optim: Any = None):
        super().__init__()
        self.terms = loss_terms(kind)
        for term in self.terms:  # submodules named by term, so checkpoints hold e.g. criterion.ce.weight
            self.add_module(term, LOSS_TERMS[term](class_weights, optim))

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        loss = getattr(self, self.terms[0])(logits, masks)
        for term in self.terms[1:]:
            loss = loss + getattr(self, term)(logits, masks)
        return loss


class SegModule(L.LightningModule):
    """An smp segmentation network with the training logic of a cityseg run.

    Args:
        config: the run's :class:`~cityseg.config.Config` (or its dict, as stored in checkpoints).
        class_names: the classes the network predicts (index ``i`` is class ``i``).
        pretrained: load ``model.encoder_weights`` into the encoder; ``False`` when weights come from a
            checkpoint anyway (resuming, evaluating), so nothing is downloaded.
        class_weights: per-class cross-entropy weights (``optim.class_weights``, worked out by
            :func:`cityseg.training.pipeline.class_weights`).

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
        from cityseg.models import build_network, network_options

        self.config = config if isinstance(config, Config) else Config.from_dict(config)
        self.class_names = list(class_names)
        # what Lightning stores in every checkpoint (hparams): the whole config and the class list
        hparams = {"config": self.config.to_dict(), "class_names": self.class_names}
        if class_weights is not None:
            hparams["class_weights"] = [float(w) for w in class_weights]
        self.save_hyperparameters(hparams)
        model = self.config.model
        if model.init:  # the architecture is that model's; unless pretrained (a resumed run) its weights are not read
            from cityseg.training.start import init_network

            self.net, filled_by = init_network(self.config, tuple(self.class_names), load_weights=pretrained)
        else:
            self.net, filled_by = build_network(
                arch=model.arch,
                encoder=model.encoder,
                num_classes=len(self.class_names),
                encoder_weights=model.encoder_weights if pretrained else "none",
                **network_options(model),
            )
        # what filled the encoder before training; kept in checkpoints so a resumed run still knows
        self.encoder_weights_used = filled_by if pretrained else model.encoder_weights
        if self.config.train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.criterion = SegmentationLoss(self.config.optim.loss, class_weights, self.config.optim)
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
        if isinstance(masks, list):  # labels of different sizes (datasets.collate_pairs): each at its own
            losses = [self._shared_step((images[i : i + 1], mask[None]), stage) for i, mask in enumerate(masks)]
            return torch.stack(losses).mean()
        logits = self(images) if stage == "train" else self._eval_logits(images)  # (B, C, h, w)
        # evaluation masks keep the labels' own size: the loss too takes the logits scored at it (B, C, H, W)
        logits = update_confusion(getattr(self, f"{stage}_metrics"), logits, masks)[0]
        # images with any labelled pixel: a batch of only padding items (see datasets.ShardSampler) has none,
        # and cross-entropy over zero pixels is 0/0
        labelled = int((masks != IGNORE_INDEX).flatten(1).any(dim=1).sum())
        loss = self.criterion(logits, masks) if labelled else logits.sum() * 0.0
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=labelled, sync_dist=True)
        return loss

    def _eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Validation/test logits as :func:`cityseg.inference.eval_net` makes them from ``data.eval_*``."""
        from cityseg.inference import eval_net

        data = self.config.data
        n = len(self.class_names)
        net = eval_net(
            self,
            data.eval_window,
            data.eval_overlap,
            flip=data.eval_flip,
            num_classes=n,
            scales=tuple(data.eval_scales),
        )
        return net(images)

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
        from cityseg.metrics import metrics_report

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
        optimizer = make_optimizer(parameter_groups(self.net, self.config), optim)
        if optim.schedule == "none" and optim.warmup_steps == 0:
            return optimizer
        self.lr_schedule = LRSchedule(
            optim.schedule, int(self.trainer.estimated_stepping_batches), warmup_steps=optim.warmup_steps
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
