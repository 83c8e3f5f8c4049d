"""The LightningDataModule of a run: train/val/test DataLoaders over :class:`cityseg.datasets.PairDataset`."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from cityseg.config import Config
from cityseg.datasets import PairDataset, ShardSampler, collate_pairs, normalization, prepare_labels
from cityseg.errors import CitysegError
from cityseg.labels import LabelCache
from cityseg.splits import SPLIT_NAMES, split_dataset


class SegDataModule(L.LightningDataModule):
    """The train/val/test DataLoaders of a run, as a LightningDataModule.

    Args:
        config: uses ``data.*`` (size, batch size, workers, mask side) and ``augment.*``.
        splits: train/val/test paths (default: :func:`~cityseg.datasets.split_dataset` of the config).
        label_cache: where labels come from (default: :func:`prepare_labels` runs in ``prepare_data``).

    Example:
        >>> datamodule = SegDataModule(config, splits, cache)  # doctest: +SKIP
        >>> trainer.fit(module, datamodule=datamodule)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: Config,
        splits: dict[str, list[Path]] | None = None,
        label_cache: LabelCache | None = None,
    ):
        super().__init__()
        self.config = config
        self.splits = splits
        self.label_cache = label_cache
        self.datasets: dict[str, PairDataset] = {}

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
        if world > 1:  # the Trainer runs with use_distributed_sampler=False: each process takes its share here
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

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
