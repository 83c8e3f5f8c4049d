"""Writing scenes to disk in the Kaggle Cityscapes-pairs layout, with the exact label ids beside each pair."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cityseg.classes import NUM_LABEL_IDS, class_set
from cityseg.defaults import SYNTH_SCENES
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.synth.render import render_scene

JPEG_QUALITY = 95
JPEG_SUBSAMPLING = 2  # PIL's code for 4:2:0 chroma, what the real pairs use
TRUTH_SUFFIX = "_labelIds.png"  # the exact label ids beside each pair: N.jpg and N_labelIds.png


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_scenes` wrote; ``str()`` gives the CLI's short report."""

    out: Path
    train: int  # pairs in OUT/train
    val: int  # pairs in OUT/val
    class_shares: dict[str, float]  # train19 class -> share of all pixels, classes present only, largest first
    seconds: float

    @property
    def count(self) -> int:
        return self.train + self.val

    @property
    def scenes_per_second(self) -> float:
        return self.count / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        where = f"{self.out / 'train'} ({self.train})"
        if self.val:
            where += f" and {self.out / 'val'} ({self.val})"
        classes = ", ".join(f"{name} {share:.1%}" for name, share in self.class_shares.items())
        return (
            f"wrote {self.count} synthetic pairs to {where} in {self.seconds:.1f} s "
            f"({self.scenes_per_second:.1f} scenes/s)\n"
            f"classes present ({len(self.class_shares)} of 19, share of pixels): {classes}"
        )


_PAIR_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)


def check_scene_arguments(count: int, seed: int, val_fraction: float) -> None:
    """Raise a one-line CitysegError for a scene count, seed or val fraction ``cityseg synth`` cannot use."""
    if count < 1:
        raise CitysegError(f"--count must be at least 1, got {count}")
    if seed < 0:
        raise CitysegError(f"--seed must be 0 or more, got {seed}")
    if not 0 <= val_fraction < 1:
        raise CitysegError(f"--val-fraction must be at least 0 and below 1, got {val_fraction}")


def _check_folder(folder: Path, count: int) -> None:
    """Refuse to overwrite images cityseg synth did not write, or to leave a larger earlier run mixed in."""
    for path in folder.iterdir():
        if path.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        match = _PAIR_NAME.match(path.name)
        if not match or not (folder / f"{match.group(1)}{TRUTH_SUFFIX}").exists():
            raise CitysegError(
                f"{folder} already holds images that cityseg synth did not write (e.g. {path.name}); "
                "choose an empty output folder"
            )
        if int(match.group(1)) > count:
            raise CitysegError(
                f"{folder} holds synthetic pairs from a larger earlier run (e.g. {path.name}); "
                f"delete {folder} or choose an empty output folder"
            )


def _write_pair(path: Path, photo: np.ndarray, label_ids: np.ndarray) -> None:
    mask = class_set("labelids").colorize(label_ids)  # official colours; ids outside 0..33 come out black
    pair = np.concatenate([photo, mask], axis=1)  # (H, 2W, 3): photo left, mask right
    try:
        with atomic_path(path.with_name(f"{path.stem}{TRUTH_SUFFIX}")) as tmp:
            Image.fromarray(label_ids).save(tmp, format="PNG")
        with atomic_path(path) as tmp:
            Image.fromarray(pair).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    except OSError as exc:
        raise CitysegError(
            f"cannot write {path}: {exc.strerror or exc}; free some space or choose another folder"
        ) from None


def write_scenes(out: str | Path, count: int = SYNTH_SCENES, seed: int = 0, val_fraction: float = 0.0) -> SynthSummary:
    """Write ``count`` synthetic pairs in the Cityscapes-pairs layout, with exact label ids beside them.

    Scene ``i`` (0-based, train first, then val) is drawn from ``np.random.default_rng([seed, i])``, so the same
    seed gives byte-identical files, and a larger count only adds scenes.

    Args:
        out: output folder; pairs go to ``out/train/N.jpg`` (N = 1, 2, ...) with ``out/train/N_labelIds.png``
            (official label ids, lossless) beside each.
        count: number of scenes.
        seed: random seed (0 or more).
        val_fraction: the last ``round(count * val_fraction)`` scenes go to ``out/val``, numbered from 1 there.

    Returns:
        A :class:`SynthSummary`: counts, class pixel shares, time taken.

    Raises:
        CitysegError: bad arguments, an unwritable folder, or a folder holding other images.

    Example:
        >>> summary = write_scenes("data/synth", count=300, seed=0, val_fraction=0.2)  # doctest: +SKIP
        >>> print(summary)  # doctest: +SKIP
    """
    check_scene_arguments(count, seed, val_fraction)
    out = ensure_writable_dir(out)
    n_val = round(count * val_fraction)
    splits = [(name, n) for name, n in (("train", count - n_val), ("val", n_val)) if n > 0]
    folders = {}
    for name, n in splits:
        folders[name] = ensure_writable_dir(out / name)
        _check_folder(folders[name], n)
    start = time.perf_counter()
    pixels = np.zeros(256, dtype=np.int64)  # per official label id
    index = 0
    for name, n in splits:
        for number in range(1, n + 1):
            photo, label_ids = render_scene(np.random.default_rng([seed, index]))
            _write_pair(folders[name] / f"{number}.jpg", photo, label_ids)
            pixels += np.bincount(label_ids.ravel(), minlength=256)
            index += 1
    seconds = time.perf_counter() - start
    return SynthSummary(out, count - n_val, n_val, train_class_shares(pixels[:NUM_LABEL_IDS]), seconds)


def train_class_shares(label_id_pixels: np.ndarray) -> dict[str, float]:
    """Pixels per official label id (length 34) -> {train19 class: share of pixels}, present only, largest first."""
    train19 = class_set("train19")
    total = max(int(label_id_pixels.sum()), 1)
    shares = np.zeros(train19.num_classes)
    for label_id, n in enumerate(label_id_pixels):
        cls = int(train19.id_to_class[label_id])
        if cls < train19.num_classes:
            shares[cls] += n / total
    order = np.argsort(-shares, kind="stable")
    return {train19.names[i]: float(shares[i]) for i in order if shares[i] > 0}
