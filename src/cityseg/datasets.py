"""Datasets for training: which images go to train, validation and test, and how a batch is read.

Data is streamed: a :class:`PairDataset` holds only paths; each item is decoded in ``__getitem__`` (in a
DataLoader worker) and its labels come from the on-disk label cache (:class:`cityseg.labels.LabelCache`),
filled once, up front, by :func:`prepare_labels`. Memory therefore does not grow with the dataset.
Photos of the official Cityscapes release (``data.root`` holding ``leftImg8bit/`` and ``gtFine/``) go the
same way: the cache reads each one's ``gtFine`` label ids and maps them to classes, caching nothing.

Splits (:func:`make_splits`), seeded so the same config always gives the same lists:

* ``official`` (default): the dataset's ``train`` folder is shuffled and ``data.val_fraction`` of it is
  held out for validation; its ``val`` folder is the test set (the Cityscapes val set is the usual
  benchmark). A dataset without a ``val`` folder (such as the shared 2975 training pairs, or a plain
  folder of pairs) has no test set of its own, so ``data.test_fraction`` of it is held out as the test
  set and the split's note says so.
* ``seed``: the original project's split: every image pooled and shuffled, then cut
  ``data.seed_fractions`` (64/16/20) into train/validation/test.

Example:
    >>> config = Config(); config.data.root = "data/cityscapes_pairs"  # doctest: +SKIP
    >>> splits, note = split_dataset(config)  # doctest: +SKIP
    >>> {name: len(paths) for name, paths in splits.items()}  # doctest: +SKIP
    {'train': 2410, 'val': 268, 'test': 297}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text, natural_key
from cityseg.pairs import discover

if TYPE_CHECKING:
    from cityseg.labels import LabelCache, Labeller
    from cityseg.transforms import PairTransform

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


# ---- splits -----------------------------------------------------------------------------------------


def _shuffled(paths: Sequence[Path], seed: int) -> list[Path]:
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order]


def _cut(paths: list[Path], fractions: Sequence[float]) -> list[list[Path]]:
    """Cut ``paths`` into consecutive parts of the given shares (which sum to 1); every part gets at least one."""
    n = len(paths)
    if n < len(fractions):
        raise CitysegError(f"only {n} images: need at least {len(fractions)} to make the train/val/test splits")
    bounds = np.rint(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    # keep every part non-empty: nudge each boundary to leave at least one image on both sides
    for i in range(len(bounds) - 1):
        low = (bounds[i - 1] if i else 0) + 1
        high = n - (len(bounds) - 1 - i)
        bounds[i] = min(max(bounds[i], low), high)
    starts = [0, *bounds[:-1]]
    return [paths[a:b] for a, b in zip(starts, bounds, strict=True)]


def _sorted(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: (natural_key(p.parent), natural_key(p)))


def split_dataset(config: Config) -> tuple[dict[str, list[Path]], str]:
    """Split the dataset at ``config.data.root`` into train/val/test lists, as ``config.data.split`` says.

    Args:
        config: uses ``data.root``, ``data.split``, ``data.val_fraction``, ``data.test_fraction``,
            ``data.seed_fractions``, ``data.limit`` and ``train.seed``.

    Returns:
        ``({"train": [...], "val": [...], "test": [...]}, note)``: naturally sorted paths per split, and a
        one-line description of how they were made (saved in splits.json, printed by ``cityseg train``).

    Raises:
        CitysegError: no dataset at the root, too few images, or fractions that do not add up.
    """
    data, seed = config.data, config.train.seed
    if not data.root:
        raise CitysegError("no dataset given: pass DATA (a folder of pair images) or set data.root")
    found = discover(data.root)

    def limited(paths: list[Path]) -> list[Path]:
        # a quick run takes a seeded random subset, so it sees the same mix of scenes as the whole set
        return _sorted(_shuffled(paths, seed)[: data.limit]) if data.limit > 0 else paths

    found = {name: limited(paths) for name, paths in found.items()}
    limit_note = f", at most {data.limit} per folder" if data.limit > 0 else ""

    if data.split == "seed":
        fractions = tuple(data.seed_fractions)
        if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise CitysegError(f"data.seed_fractions must be three positive shares adding up to 1, got {fractions}")
        pooled = [p for paths in found.values() for p in paths]
        train, val, test = _cut(_shuffled(pooled, seed), fractions)
        shares = "/".join(f"{round(100 * f)}" for f in fractions)
        note = f"seed split: {len(pooled)} images from {', '.join(found)} pooled and cut {shares} (seed {seed})"
    elif data.split == "official":
        pool = found.get("train", found.get("all", []))
        folder = "train folder" if "train" in found else "folder"
        if "val" in found and pool:
            if not 0 < data.val_fraction < 1:
                raise CitysegError(f"data.val_fraction must be between 0 and 1, got {data.val_fraction}")
            train, val = _cut(_shuffled(pool, seed), (1 - data.val_fraction, data.val_fraction))
            test = found["val"]
            note = (
                f"official split: {len(pool)} images of the {folder}, {data.val_fraction:.0%} held out for "
                f"validation (seed {seed}); the val folder's {len(test)} images are the test set"
            )
        else:
            pool = pool or found.get("val", [])
            test_fraction = data.test_fraction
            if not (0 < data.val_fraction < 1 and 0 < test_fraction < 1 and data.val_fraction + test_fraction < 1):
                raise CitysegError(
                    "data.val_fraction and data.test_fraction must be between 0 and 1 and add up to less than 1"
                )
            shares = (1 - data.val_fraction - test_fraction, data.val_fraction, test_fraction)
            train, val, test = _cut(_shuffled(pool, seed), shares)
            note = (
                f"official split, but the dataset has no val folder to test on: {len(pool)} images of the {folder} "
                f"split {shares[0]:.0%} train / {shares[1]:.0%} validation / {shares[2]:.0%} test (seed {seed})"
            )
    else:
        raise CitysegError(f"unknown split {data.split!r}; choose official or seed")
    splits = {"train": _sorted(train), "val": _sorted(val), "test": _sorted(test)}
    return splits, note + limit_note


def make_splits(config: Config) -> dict[str, list[Path]]:
    """The train/val/test path lists of :func:`split_dataset`, without its note."""
    return split_dataset(config)[0]


def save_splits(
    splits: dict[str, list[Path]], path: str | os.PathLike, root: str | os.PathLike, note: str = ""
) -> None:
    """Write the split lists to ``path`` (splits.json), paths relative to the dataset ``root`` where possible.

    Relative paths keep a run portable: the same lists resolve against the dataset wherever it is mounted.
    """
    root = Path(root).resolve()

    def relative(p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            return str(Path(p).resolve())

    document: dict[str, Any] = {
        "root": str(root),
        "note": note,
        "counts": {name: len(paths) for name, paths in splits.items()},
    }
    document.update({name: [relative(p) for p in paths] for name, paths in splits.items()})
    atomic_write_text(path, json.dumps(document, indent=1) + "\n")


def load_splits(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Read splits.json back; relative entries resolve against ``root`` (default: the root it was saved with)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CitysegError(f"cannot read split lists {path}: {exc}; the run folder is incomplete") from None
    base = Path(root) if root is not None else Path(document.get("root", "."))
    return {name: [base / p for p in document.get(name, [])] for name in SPLIT_NAMES if name in document}


# ---- labels -----------------------------------------------------------------------------------------


def prepare_labels(
    config: Config,
    splits: dict[str, list[Path]],
    labeller: Labeller | None = None,
    progress: bool = True,
) -> tuple[dict[str, list[Path]], LabelCache]:
    """Label every image of every split once, into the on-disk cache, before training starts.

    Labelling up front uses ``data.workers`` processes and means DataLoader workers only read cached
    arrays. With ``data.skip_bad`` unreadable images are dropped from the splits (and listed); otherwise
    the first one stops the run with its one-line error.

    Args:
        config: uses ``labels.*`` and ``data.mask_side``, ``data.cache_dir``, ``data.workers``, ``data.skip_bad``.
        splits: train/val/test paths; a K-Means labeller is fitted on the train images only.
        labeller: reuse this labeller (e.g. the K-Means centres a run saved) instead of making one.

    Returns:
        ``(splits, label_cache)``: the splits without skipped images, and the cache the datasets read from.
    """
    from cityseg.labels import LabelCache, label_dataset, make_labeller

    data = config.data
    cache_dir = data.cache_dir or None
    if labeller is None:
        labeller = make_labeller(config.labels, splits.get("train", []), mask_side=data.mask_side, cache_dir=cache_dir)
    every = [p for name in SPLIT_NAMES for p in splits.get(name, [])]
    report = label_dataset(
        every,
        labeller,
        cache_dir=cache_dir,
        workers=max(1, data.workers),
        skip_bad=data.skip_bad,
        progress=progress,
        mask_side=data.mask_side,
    )
    skipped = {Path(p) for p, _ in getattr(report, "skipped", [])}
    if skipped:
        for path, reason in report.skipped:
            log.warning("skipped %s: %s", path, reason)
        splits = {name: [p for p in paths if Path(p) not in skipped] for name, paths in splits.items()}
        for name in splits:
            if not splits[name]:
                raise CitysegError(f"every {name} image was skipped as unreadable; check the dataset at {data.root}")
    return splits, LabelCache(labeller, cache_dir=cache_dir)


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


def normalisation(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) photos are normalised with: what the encoder's pretrained weights expect (used either way)."""
    from cityseg.models import input_normalization

    mean, std = input_normalization(encoder)
    return tuple(mean), tuple(std)


class SegDataModule(L.LightningDataModule):
    """The train/val/test DataLoaders of a run, as a LightningDataModule.

    Args:
        config: uses ``data.*`` (size, batch size, workers, mask side) and ``augment.*``.
        splits: train/val/test paths (default: :func:`make_splits` of the config).
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
            self.splits = make_splits(self.config)
        if self.label_cache is None:
            self.splits, self.label_cache = prepare_labels(self.config, self.splits)

    def setup(self, stage: str | None = None) -> None:
        from cityseg.transforms import eval_transform, train_transform

        if self.splits is None or self.label_cache is None:
            self.prepare_data()  # other processes of a multi-process run: labels are cached by now
        data = self.config.data
        mean, std = normalisation(self.config.model.encoder)
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
