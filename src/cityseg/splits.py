"""Which images go to train, validation and test: seeded, so the same config always gives the same lists.

Splits (:func:`split_dataset`, ``data.split``):

* ``official`` (default): the dataset's ``train`` folder is shuffled and ``data.val_fraction`` of it is
  held out for validation; its ``val`` folder is the test set (the Cityscapes val set is the usual
  benchmark). A dataset without a ``val`` folder (such as the shared 2975 training pairs, or a plain
  folder of pairs) has no test set of its own, so ``data.test_fraction`` of it is held out as the test
  set and the split's note says so.
* ``blocks``: like ``official``, but what is held out are whole *blocks* of the file order rather than
  random images. The Cityscapes pairs keep the release's order, city by city, and neighbouring photos
  were taken seconds apart on the same street: a random split tests on streets the model trained on,
  and overstates how it does on a new city. Blocks are the cities where they can be told: the city
  folders of the release layout, or the release's per-city counts (:data:`CITYSCAPES_TRAIN_CITIES`) when
  a folder holds exactly the 2975 training pairs in order; otherwise runs of ``data.block_size`` images.
  Which blocks are held out is seeded (``train.seed``).
* ``seed``: the original project's split: every image pooled and shuffled, then cut
  ``data.seed_fractions`` (64/16/20) into train/validation/test.

Example:
    >>> from cityseg.config import Config
    >>> config = Config(); config.data.root = "data/cityscapes_pairs"  # doctest: +SKIP
    >>> splits, note = split_dataset(config)  # doctest: +SKIP
    >>> {name: len(paths) for name, paths in splits.items()}  # doctest: +SKIP
    {'train': 2410, 'val': 268, 'test': 297}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.config import Config
from cityseg.defaults import SPLIT_NAMES, SPLITS
from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text, natural_key
from cityseg.pairs import discover

# The Cityscapes fine-annotation training set, city by city in the release's sorted order (2975 images):
# the Kaggle/pix2pix pairs 1.jpg ... 2975.jpg follow it.
CITYSCAPES_TRAIN_CITIES = (
    ("aachen", 174), ("bochum", 96), ("bremen", 316), ("cologne", 154), ("darmstadt", 85),
    ("dusseldorf", 221), ("erfurt", 109), ("hamburg", 248), ("hanover", 196), ("jena", 119),
    ("krefeld", 99), ("monchengladbach", 94), ("strasbourg", 365), ("stuttgart", 196), ("tubingen", 144),
    ("ulm", 95), ("weimar", 142), ("zurich", 122),
)  # fmt: skip


# ---- cutting ----------------------------------------------------------------------------------------


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


# ---- blocks -----------------------------------------------------------------------------------------


def file_blocks(paths: Sequence[Path], block_size: int) -> tuple[list[tuple[str, list[Path]]], str]:
    """Contiguous blocks of ``paths`` (in natural order): cities where they can be told, else equal runs.

    Returns:
        ``([(block name, paths), ...], how the blocks were made)``.

    Example:
        >>> blocks, how = file_blocks([Path(f"{i}.jpg") for i in range(1, 251)], block_size=100)
        >>> [(name, len(paths)) for name, paths in blocks], how
        ([('1-100', 100), ('101-200', 100), ('201-250', 50)], 'runs of 100 images')
    """
    ordered = _sorted(list(paths))
    folders = {p.parent for p in ordered}
    if len(folders) > 1:  # the release layout: one folder per city
        by_folder: dict[Path, list[Path]] = {}
        for path in ordered:
            by_folder.setdefault(path.parent, []).append(path)
        return [(folder.name, items) for folder, items in by_folder.items()], "city folders"
    if len(ordered) == sum(count for _, count in CITYSCAPES_TRAIN_CITIES):
        blocks, start = [], 0
        for city, count in CITYSCAPES_TRAIN_CITIES:
            blocks.append((city, ordered[start : start + count]))
            start += count
        return blocks, "the release's cities (its per-city counts, in file order)"
    size = max(1, block_size)
    runs = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    return [(f"{i * size + 1}-{i * size + len(run)}", run) for i, run in enumerate(runs)], f"runs of {size} images"


def _take_blocks(blocks: list[tuple[str, list[Path]]], target: int) -> tuple[list[tuple[str, list[Path]]], list]:
    """Blocks (in the given, shuffled, order) adding up to about ``target`` images, and the blocks left."""
    taken: list[tuple[str, list[Path]]] = []
    count = 0
    for block in list(blocks):
        if count >= target:
            break
        # skip a block that would overshoot by half the target, unless nothing smaller is left to take
        if count + len(block[1]) > 1.5 * target and any(count + len(b[1]) <= 1.5 * target for b in blocks):
            continue
        taken.append(block)
        blocks.remove(block)
        count += len(block[1])
    return taken, blocks


def _block_split(pool: list[Path], shares: dict[str, float], data: Any, seed: int) -> tuple[dict, str]:
    """Hold out whole blocks of ``pool`` for each split named in ``shares``; the rest is the train split."""
    blocks, how = file_blocks(pool, data.block_size)
    if len(blocks) <= len(shares):
        raise CitysegError(
            f"only {len(blocks)} blocks of {how} in {len(pool)} images: too few to hold some out; "
            "lower data.block_size or use data.split=official"
        )
    order = np.random.default_rng(seed).permutation(len(blocks))
    remaining = [blocks[i] for i in order]
    parts: dict[str, list[Path]] = {}
    names: list[str] = []
    for split, share in shares.items():
        taken, remaining = _take_blocks(remaining, max(1, round(share * len(pool))))
        parts[split] = [p for _, paths in taken for p in paths]
        names.append(f"{split} {', '.join(name for name, _ in taken)} ({len(parts[split])})")
    parts["train"] = [p for _, paths in remaining for p in paths]
    return parts, f"{len(blocks)} blocks ({how}); held out: {'; '.join(names)} (seed {seed})"


# ---- the splits -------------------------------------------------------------------------------------


def _check_fractions(data: Any, with_test: bool) -> None:
    val, test = data.val_fraction, data.test_fraction if with_test else 0.0
    if not (0 < val < 1 and (not with_test or 0 < test < 1) and val + test < 1):
        raise CitysegError("data.val_fraction and data.test_fraction must be between 0 and 1 and add up to less than 1")


def _seed_split(found: dict[str, list[Path]], data: Any, seed: int) -> tuple[dict, str]:
    fractions = tuple(data.seed_fractions)
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise CitysegError(f"data.seed_fractions must be three positive shares adding up to 1, got {fractions}")
    pooled = [p for paths in found.values() for p in paths]
    train, val, test = _cut(_shuffled(pooled, seed), fractions)
    shares = "/".join(f"{round(100 * f)}" for f in fractions)
    note = f"seed split: {len(pooled)} images from {', '.join(found)} pooled and cut {shares} (seed {seed})"
    return {"train": train, "val": val, "test": test}, note


def _official_split(found: dict[str, list[Path]], data: Any, seed: int, blocks: bool) -> tuple[dict, str]:
    pool = found.get("train", found.get("all", []))
    folder = "train folder" if "train" in found else "folder"
    name = "blocks" if blocks else "official"
    if "val" in found and pool:
        _check_fractions(data, with_test=False)
        test = found["val"]
        if blocks:
            parts, how = _block_split(pool, {"val": data.val_fraction}, data, seed)
            train, val = parts["train"], parts["val"]
        else:
            train, val = _cut(_shuffled(pool, seed), (1 - data.val_fraction, data.val_fraction))
            how = f"{data.val_fraction:.0%} held out for validation (seed {seed})"
        note = f"{name} split: {len(pool)} images of the {folder}, {how}; "
        note += f"the val folder's {len(test)} images are the test set"
        return {"train": train, "val": val, "test": test}, note
    pool = pool or found.get("val", [])
    _check_fractions(data, with_test=True)
    if blocks:
        parts, how = _block_split(pool, {"test": data.test_fraction, "val": data.val_fraction}, data, seed)
        note = f"blocks split of the {len(pool)} images of the {folder} (no val folder to test on): {how}"
        return parts, note
    shares = (1 - data.val_fraction - data.test_fraction, data.val_fraction, data.test_fraction)
    train, val, test = _cut(_shuffled(pool, seed), shares)
    note = (
        f"official split, but the dataset has no val folder to test on: {len(pool)} images of the {folder} "
        f"split {shares[0]:.0%} train / {shares[1]:.0%} validation / {shares[2]:.0%} test (seed {seed})"
    )
    return {"train": train, "val": val, "test": test}, note


def split_dataset(config: Config) -> tuple[dict[str, list[Path]], str]:
    """Split the dataset at ``config.data.root`` into train/val/test lists, as ``config.data.split`` says.

    Args:
        config: uses ``data.root``, ``data.split``, ``data.val_fraction``, ``data.test_fraction``,
            ``data.seed_fractions``, ``data.block_size``, ``data.limit`` and ``train.seed``.

    Returns:
        ``({"train": [...], "val": [...], "test": [...]}, note)``: naturally sorted paths per split, and a
        one-line description of how they were made (saved in splits.json, printed by ``cityseg train``).

    Raises:
        CitysegError: no dataset at the root, too few images, or fractions that do not add up.
    """
    data, seed = config.data, config.train.seed
    if not data.root:
        raise CitysegError("no dataset given: pass DATA (a folder of pair images) or set data.root")
    if data.split not in SPLITS:
        raise CitysegError(f"unknown split {data.split!r}; choose one of: {', '.join(SPLITS)}")
    found = discover(data.root, label_format=data.label_format, skip_bad=data.skip_bad)
    if data.split == "blocks" and data.limit > 0:
        # whole blocks first, then the limit within each split: a quick run still tests on unseen blocks
        splits, note = _official_split(found, data, seed, blocks=True)
        total = sum(len(paths) for paths in splits.values())
        keep = {name: max(1, round(data.limit * len(paths) / max(1, total))) for name, paths in splits.items()}
        splits = {name: _shuffled(paths, seed)[: keep[name]] for name, paths in splits.items()}
        return {name: _sorted(splits[name]) for name in SPLIT_NAMES}, note + f", {data.limit} images sampled"

    def limited(paths: list[Path]) -> list[Path]:
        # a quick run takes a seeded random subset, so it sees the same mix of scenes as the whole set
        return _sorted(_shuffled(paths, seed)[: data.limit]) if data.limit > 0 else paths

    found = {name: limited(paths) for name, paths in found.items()}
    limit_note = f", at most {data.limit} per folder" if data.limit > 0 else ""
    if data.split == "seed":
        splits, note = _seed_split(found, data, seed)
    else:
        splits, note = _official_split(found, data, seed, blocks=data.split == "blocks")
    return {name: _sorted(splits[name]) for name in SPLIT_NAMES}, note + limit_note


# ---- splits.json ------------------------------------------------------------------------------------


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
