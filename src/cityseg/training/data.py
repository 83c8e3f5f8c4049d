"""The LightningDataModule of a run: train/val/test DataLoaders over :class:`cityseg.datasets.PairDataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cityseg.config import Config
from cityseg.datasets import (
    PairDataset,
    RareClassSampler,
    ShardSampler,
    class_pixels,
    collate_pairs,
    normalization,
    prepare_labels,
)
from cityseg.errors import CitysegError
from cityseg.labels import LabelCache
from cityseg.splits import SPLIT_NAMES, split_dataset


class StepPlan(Protocol):
    """What the data module asks of a time budget: the steps its latest plan fits.

    :class:`~cityseg.training.budget.BudgetPlanner` is one; the same on every process of a run.
    """

    @property
    def planned_steps(self) -> int | None:
        """The planned schedule length in steps, or None before the first plan."""


class SegDataModule(L.LightningDataModule):
    """The train/val/test DataLoaders of a run, as a LightningDataModule.

    Args:
        config: uses ``data.*`` (size, batch size, workers, mask side) and ``augment.*``.
        splits: train/val/test paths (default: :func:`~cityseg.datasets.split_dataset` of the config).
        label_cache: where labels come from (default: :func:`prepare_labels` runs in ``prepare_data``).
        step_plan: the run's time budget (the one among the Trainer's callbacks), whose plan moves the switch
            to ``augment.final_epochs`` earlier; None without a time budget.

    Example:
        >>> datamodule = SegDataModule(config, splits, cache)  # doctest: +SKIP
        >>> trainer.fit(module, datamodule=datamodule)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: Config,
        splits: dict[str, list[Path]] | None = None,
        label_cache: LabelCache | None = None,
        step_plan: StepPlan | None = None,
    ):
        super().__init__()
        self.config = config
        self.splits = splits
        self.label_cache = label_cache
        self.step_plan = step_plan
        self.datasets: dict[str, PairDataset] = {}
        self._sampler: RareClassSampler | None = None

    def prepare_data(self) -> None:
        # runs once per node before any process reads data; fills the label cache (atomic writes, so safe)
        if self.splits is None:
            self.splits = split_dataset(self.config)[0]
        if self.label_cache is None:
            self.splits, self.label_cache, _ = prepare_labels(self.config, self.splits)

    def setup(self, stage: str | None = None) -> None:
        from cityseg.transforms import eval_transform, train_transform

        if self.splits is None or self.label_cache is None:
            self.prepare_data()  # other processes of a multi-process run: labels are cached by now
        data = self.config.data
        mean, std = normalization(self.config.model.encoder)
        transforms = {
            "train": train_transform(data.size, self.config.augment, mean, std),
            "val": eval_transform(data.size, mean, std),
            "test": eval_transform(data.size, mean, std),
        }
        for name in SPLIT_NAMES:
            if self.splits.get(name):
                self.datasets[name] = PairDataset(self.splits[name], self.label_cache, transforms[name], data.mask_side)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        if name not in self.datasets:
            raise CitysegError(f"the {name} split is empty; add images or change data.split")
        data = self.config.data
        dataset = self.datasets[name]
        # a last partial batch of one image makes batch norm fail and noisy steps; drop it when training
        drop_last = shuffle and len(dataset) > data.batch_size
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = None
        if shuffle and data.rare_class_temperature > 0:
            sampler = self._rare_class_sampler(dataset, world, rank)
        elif world > 1:  # the Trainer runs with use_distributed_sampler=False: each process takes its share here
            if not shuffle:  # validation and test: every image scored exactly once, by one process
                sampler = ShardSampler(len(dataset), rank, world, pad=name == "val")
            else:
                sampler = DistributedSampler(
                    dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.config.train.seed, drop_last=True
                )
        return DataLoader(
            dataset,
            batch_size=data.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=collate_pairs,  # evaluation labels of different sizes stay a list
            num_workers=data.workers,
            persistent_workers=data.workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _rare_class_sampler(self, dataset: PairDataset, world: int, rank: int) -> RareClassSampler:
        """One per run (its draws go on across epochs), each process drawing its own share."""
        if self._sampler is None:
            counts = class_pixels(dataset, self.label_cache.labeller.class_set.num_classes)
            seed = self.config.train.seed * 1000 + rank
            self._sampler = RareClassSampler(
                counts, self.config.data.rare_class_temperature, len(dataset) // world, seed
            )
        return self._sampler

    def train_dataloader(self) -> DataLoader:
        if not self._in_final_epochs():
            return self._loader("train", shuffle=True)
        if "train_whole" not in self.datasets:
            from cityseg.transforms import whole_photo_transform

            mean, std = normalization(self.config.model.encoder)
            train = self.datasets["train"]
            transform = whole_photo_transform(self.config.data.size, self.config.augment, mean, std)
            self.datasets["train_whole"] = PairDataset(train.paths, train.label_cache, transform, train.mask_side)
        return self._loader("train_whole", shuffle=True)

    def _in_final_epochs(self) -> bool:
        """Whether the epoch about to start is one of the last ``augment.final_epochs`` of the planned run.

        A time budget's plan rarely ends on an epoch boundary, so the switch comes at the boundary nearest to
        ``final_epochs`` epochs before the planned end: between ``final_epochs - 0.5`` and ``+ 0.5`` epochs.
        """
        epochs = self.config.augment.final_epochs
        trainer = getattr(self, "trainer", None)
        if epochs <= 0 or trainer is None or "train" not in self.datasets:
            return False
        steps_per_epoch = max(1, len(self.datasets["train"]) // self.config.data.batch_size // trainer.world_size)
        planned = self.config.train.max_epochs * steps_per_epoch
        if trainer.max_steps > 0:
            planned = min(planned, trainer.max_steps)
        budgeted = self.step_plan.planned_steps if self.step_plan is not None else None
        if budgeted is not None:  # a time budget: the steps its last plan fits (the same on every process)
            planned = min(planned, budgeted)
        return planned - trainer.global_step <= (epochs + 0.5) * steps_per_epoch

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
