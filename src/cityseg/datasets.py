"""Datasets for training: labels prepared up front, and how one image of a batch is read.

Data is streamed: a :class:`PairDataset` holds only paths; each item is decoded in ``__getitem__`` (in a
DataLoader worker) and its labels come from the on-disk label cache (:class:`cityseg.labels.LabelCache`),
filled once, up front, by :func:`prepare_labels`. Memory therefore does not grow with the dataset.
Photos of the official Cityscapes release (``data.root`` holding ``leftImg8bit/`` and ``gtFine/``) go the
same way: the cache reads each one's ``gtFine`` label ids and maps them to classes, caching nothing.
Which images form each split is :mod:`cityseg.splits`; the LightningDataModule is
:class:`cityseg.training.data.SegDataModule`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset, Sampler

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.splits import SPLIT_NAMES

if TYPE_CHECKING:
    from cityseg.labels import LabelCache, Labeller, LabelReport
    from cityseg.transforms import PairTransform

log = logging.getLogger(__name__)


# ---- labels -----------------------------------------------------------------------------------------


def prepare_labels(
    config: Config,
    splits: dict[str, list[Path]],
    labeller: Labeller | None = None,
    progress: bool = True,
) -> tuple[dict[str, list[Path]], LabelCache, dict[str, LabelReport]]:
    """Label every image of every split once, into the on-disk cache, before training starts.

    Labelling up front uses ``data.workers`` processes and means DataLoader workers only read cached
    arrays. With ``data.skip_bad`` unreadable images are dropped from the splits (and listed); otherwise
    the first one stops the run with its one-line error.

    Args:
        config: uses ``labels.*`` and ``data.mask_side``, ``data.cache_dir``, ``data.workers``, ``data.skip_bad``.
        splits: train/val/test paths; a K-Means labeller is fitted on the train images only.
        labeller: reuse this labeller (e.g. the K-Means centres a run saved) instead of making one.

    Returns:
        ``(splits, label_cache, reports)``: the splits without skipped images, the cache the datasets read
        from, and each split's :class:`~cityseg.labels.LabelReport` (class pixel counts, skipped images).
    """
    from cityseg.labelled_folders import adopt_dataset_classes, label_source
    from cityseg.labels import LabelCache, LabellingOptions, label_splits, make_labeller

    adopt_dataset_classes(config)  # labels.classes: auto -> the dataset's own (train prints what it chose)
    data = config.data
    cache_dir = data.cache_dir or None
    source = label_source(data.root, data.label_format)  # a labelled folder's photos: labels from its label images
    if labeller is None:
        exact = source is not None
        labeller = make_labeller(config.labels, splits.get("train", []), data.mask_side, cache_dir, exact=exact)
    options = LabellingOptions(cache_dir, max(1, data.workers), data.skip_bad, progress, data.mask_side, source=source)
    report = label_splits({name: splits[name] for name in SPLIT_NAMES if splits.get(name)}, labeller, options)
    skipped = {Path(p) for p, _ in report.skipped}
    if skipped:
        for path, reason in report.skipped:
            log.warning("skipped %s: %s", path, reason)
        splits = {name: [p for p in paths if Path(p) not in skipped] for name, paths in splits.items()}
        for name in splits:
            if not splits[name]:
                raise CitysegError(f"every {name} image was skipped as unreadable; check the dataset at {data.root}")
    reports = report.sets
    return splits, LabelCache(labeller, cache_dir=cache_dir, source=source), reports


# ---- datasets ---------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """Photos and their class labels, read one at a time from pair images and the label cache.

    Args:
        paths: pair images, or Cityscapes release photos (their labels come from their gtFine label ids).
        label_cache: gives each image's (H, W) uint8 class indices (computed once, then read from disk).
        transform: maps ``(photo (H, W, 3) uint8, labels (H, W) uint8)`` to tensors; ``None`` returns the arrays.
        mask_side: which half of each pair holds the mask.

    Returns (per item):
        ``(image, mask)``: with the presets of :mod:`cityseg.transforms`, image (3, h, w) float32, mask int64.

    Example:
        >>> dataset = PairDataset(splits["train"], cache, train_transform(...))  # doctest: +SKIP
        >>> image, mask = dataset[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        label_cache: LabelCache,
        transform: PairTransform | None = None,
        mask_side: str = "right",
    ):
        self.paths = [Path(p) for p in paths]  # paths only: nothing decoded is kept
        self.label_cache = label_cache
        self.transform = transform
        self.mask_side = mask_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        # index len(self) is the padding item of a ShardSampler(pad=True): a real photo with every pixel
        # ignored, so it keeps the processes' batch counts equal without counting in any metric
        padding = index == len(self.paths)
        # (H, W, 3) uint8 photo and (H, W) uint8 class indices; the pair image is decoded once
        photo, labels = self.label_cache.pair(self.paths[0 if padding else index], mask_side=self.mask_side)
        if padding:
            labels = np.full_like(labels, IGNORE_INDEX)
        if self.transform is None:
            return photo, labels
        return self.transform(photo, labels)

    def __repr__(self) -> str:
        return f"PairDataset({len(self.paths)} images, transform={type(self.transform).__name__})"


def collate_pairs(batch: list[tuple]) -> tuple:
    """A batch of ``(image, mask)`` items, stacked; masks of different sizes stay a list of (H, W) tensors.

    Evaluation scores each photo at its label's own resolution, and the photos of one dataset need not share a
    size (KITTI's are 1242x375 to 1226x370): a batch of such labels cannot be one tensor, so each keeps its own.
    """
    from torch.utils.data import default_collate

    if len({tuple(mask.shape) for _, mask in batch}) <= 1:
        return default_collate(batch)
    return default_collate([image for image, _ in batch]), [mask for _, mask in batch]


class ShardSampler(Sampler[int]):
    """Every ``world``-th index from ``rank``: each image scored by exactly one process, none repeated.

    A DistributedSampler pads the last shard with repeated images so every process gets as many batches;
    that would count those images twice in the metrics. Testing runs the LightningModule directly (no DDP
    forward, no per-batch collective) and its metrics are confusion-matrix sums synced once at the end, so
    shards of different sizes are fine there. Validation inside ``fit`` goes through DDP's forward, where
    every process must run as many batches: ``pad=True`` fills the short shards with index ``length``,
    which :class:`PairDataset` serves as a fully ignored item (scored nowhere).
    """

    def __init__(self, length: int, rank: int, world: int, pad: bool = False):
        self.indices = list(range(rank, length, world))
        if pad:
            self.indices += [length] * (-(-length // world) - len(self.indices))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class RareClassSampler(Sampler[int]):
    """Rare-class sampling (DAFormer's RCS): draw a class, rarer ones likelier, then an image that has it.

    Class ``c`` is drawn with probability ``softmax((1 - f_c) / temperature)``, ``f_c`` its share of the
    labelled pixels, so at the usual ``temperature`` of 0.01 the frequent classes (road, building,
    vegetation, car) are almost never drawn and the rare ones about equally often; then one image whose labels
    hold that class (on at least :data:`~cityseg.labels.PRESENCE_SHARE` of it, so blend specks do not count)
    is drawn uniformly. Each image's chance is the sum over its classes. An epoch is ``num_samples`` draws
    with replacement; the stream goes on from epoch to epoch.

    Args:
        class_pixels: (N, C) pixels of each class in each image (:func:`class_pixels`).
        temperature: > 0; lower draws the rarest classes more.
        num_samples: draws per epoch (a process's share of the images, under DDP).
        seed: seeds the draws (each process its own).
    """

    def __init__(self, class_pixels: np.ndarray, temperature: float, num_samples: int, seed: int = 0):
        import torch

        from cityseg.labels import PRESENCE_SHARE

        pixels = np.asarray(class_pixels, dtype=np.float64)  # (N, C)
        shares = pixels.sum(0) / max(1.0, pixels.sum())  # (C,) share of the labelled pixels
        drawn = np.exp((1 - shares) / temperature - ((1 - shares) / temperature).max())
        present = pixels >= PRESENCE_SHARE * np.maximum(1.0, pixels.sum(1, keepdims=True))  # (N, C)
        drawn = np.where(present.any(0), drawn, 0.0)  # a class no image holds cannot be drawn
        self.class_probability = drawn / drawn.sum()
        # each image: the chance of drawing one of its classes, then it among the images that hold the class
        weights = (present / np.maximum(1, present.sum(0))) @ self.class_probability  # (N,)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = num_samples
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        import torch

        return iter(torch.multinomial(self.weights, self.num_samples, True, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


def class_pixels(dataset: PairDataset, num_classes: int) -> np.ndarray:
    """(N, C) int64: pixels of each class in each image of ``dataset``, from the label cache (ignored left out)."""
    counts = np.zeros((len(dataset.paths), num_classes), dtype=np.int64)
    for index, path in enumerate(dataset.paths):
        labels = dataset.label_cache.get(path, mask_side=dataset.mask_side)
        counts[index] = np.bincount(labels[labels < num_classes].ravel(), minlength=num_classes)[:num_classes]
    return counts


def normalization(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) photos are normalized with: what the encoder's pretrained weights expect (used either way)."""
    from cityseg.models import input_normalization

    mean, std = input_normalization(encoder)
    return tuple(mean), tuple(std)
