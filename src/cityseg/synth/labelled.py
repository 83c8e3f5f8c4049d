"""Writing scenes as a labelled folder of one of the known layouts: KITTI, BDD100K, ACDC, Dark Zurich, images/.

``cityseg synth OUT --layout kitti`` draws scenes at the dataset's shape and writes each photo and its label
image where that dataset keeps them, its labels in its own format (or ``label_format``), encoded from the
scene's exact label ids: a miniature of the dataset that cityseg reads as it reads the real one.

The datasets' folders and label formats are the data layer's (:mod:`cityseg.layouts`,
:mod:`cityseg.label_formats`, which read them); what only the scenes need is here: their names and size in
each layout (:data:`SCENE_FILES`) and how label ids are written in each format (:data:`LABEL_ENCODERS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cityseg.classes import NUM_LABEL_IDS, class_set
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.label_formats import label_format as label_format_named
from cityseg.layouts import CONDITIONS, LAYOUTS, Layout, name_key
from cityseg.synth.render import render_scene
from cityseg.synth.write import JPEG_QUALITY, JPEG_SUBSAMPLING, check_scene_arguments, train_class_shares

FRAMES_PER_SEQUENCE = 8  # ACDC and Dark Zurich keep their frames in one folder per recorded sequence


@dataclass(frozen=True)
class SceneFiles:
    """How scenes are named and sized in one layout.

    Attributes:
        photo_name: where scene ``i`` of ``split`` goes, under the layout's photos: keys ``split``, ``i``,
            ``seq`` (a sequence number), ``condition`` (ACDC's, cycling through ``layouts.CONDITIONS``).
        size: (H, W) of the scenes drawn, the dataset's shape, small.
    """

    photo_name: str
    size: tuple[int, int] = (144, 256)


SCENE_FILES: dict[str, SceneFiles] = {  # one for each of layouts.LAYOUTS
    "kitti": SceneFiles("{i:06d}_10.png", size=(96, 320)),
    "bdd100k": SceneFiles("{split}/{i:08x}-5ca1ab1e.jpg"),
    "acdc": SceneFiles("{condition}/{split}/GOPR{seq:04d}/GOPR{seq:04d}_frame_{i:06d}_rgb_anon.png"),
    "darkzurich": SceneFiles("{split}/night/GOPR{seq:04d}/GOPR{seq:04d}_frame_{i:06d}_rgb_anon.png"),
    "images": SceneFiles("{split}/{i:05d}.png"),
}


def _encode_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return class_set("train19").from_label_ids(label_ids)


def _encode_colors(label_ids: np.ndarray) -> np.ndarray:
    return class_set("labelids").colorize(label_ids)


# label format (label_formats.LABEL_FORMATS) -> (H, W) official label ids -> the pixels written
LABEL_ENCODERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "labelids": lambda ids: ids,
    "trainids": _encode_train_ids,
    "color": _encode_colors,
}


def write_label_file(path: Path, label_ids: np.ndarray, format_name: str) -> None:
    """Write (H, W) official label ids as a lossless PNG of ``format_name`` (an open file or a path)."""
    label_format_named(format_name)  # an unknown name is the one-line error of label_formats
    Image.fromarray(LABEL_ENCODERS[format_name](label_ids)).save(path, format="PNG")


@dataclass(frozen=True)
class LayoutSummary:
    """What :func:`write_labelled` wrote; ``str()`` gives the CLI's short report."""

    out: Path
    layout: Layout
    label_format: str
    counts: dict[str, int]  # split -> scenes ("all" for a layout without split folders)
    size: tuple[int, int]
    class_shares: dict[str, float]
    seconds: float

    def __str__(self) -> str:
        splits = ", ".join(f"{split} {count}" for split, count in self.counts.items())
        classes = ", ".join(f"{name} {share:.1%}" for name, share in self.class_shares.items())
        return (
            f"wrote {sum(self.counts.values())} synthetic scenes as {self.layout.title} to {self.out} ({splits}; "
            f"{self.size[0]}x{self.size[1]}, {self.label_format} labels) in {self.seconds:.1f} s\n"
            f"classes present ({len(self.class_shares)} of 19, share of pixels): {classes}"
        )


def scene_paths(layout: Layout, split: str, index: int, label_format: str, flat: bool) -> tuple[str, str]:
    """(photo, label) paths of scene ``index`` of ``split``, relative to the root, as ``layout`` keeps them."""
    photo_name = SCENE_FILES[layout.name].photo_name
    template = photo_name.removeprefix("{split}/") if flat else photo_name
    seq = index // FRAMES_PER_SEQUENCE
    photo = template.format(split=split, i=index, seq=seq, condition=CONDITIONS[seq % len(CONDITIONS)])
    stem, _ = name_key(Path(photo).name)
    label = str(Path(photo).parent / f"{stem}{layout.label_suffix(label_format)}.png")
    return f"{layout.photos}/{photo}", f"{layout.label_folder(label_format)}/{label}"


def write_labelled(
    out: str | Path,
    layout: str,
    count: int = 20,
    seed: int = 0,
    val_fraction: float = 0.0,
    size: tuple[int, int] | None = None,
    label_format: str | None = None,
) -> LayoutSummary:
    """Write ``count`` scenes into ``out`` in the folders and formats of ``layout`` (:data:`~cityseg.layouts.LAYOUTS`).

    Scene ``i`` is drawn from ``np.random.default_rng([seed, i])``, so the same seed gives the same files.

    Args:
        out: the dataset's root (its photos folder must be empty or absent).
        layout: ``kitti``, ``bdd100k``, ``acdc``, ``darkzurich`` or ``images``.
        count, seed: how many scenes, and the seed.
        val_fraction: the last ``round(count * val_fraction)`` scenes go to the val split (a layout without split
            folders takes none: its split is made by seed when it is read).
        size: (height, width); default the layout's :attr:`SceneFiles.size` (:data:`SCENE_FILES`).
        label_format: ``labelids``, ``trainids`` or ``color``; default the layout's own.

    Raises:
        CitysegError: an unknown layout or format, bad numbers, a photos folder that is not empty, a disk error.

    Example:
        >>> print(write_labelled("data/kitti-synth", "kitti", count=20))  # doctest: +SKIP
    """
    if layout not in LAYOUTS:
        raise CitysegError(f"unknown layout {layout!r}; choose one of: pairs, {', '.join(LAYOUTS)}")
    chosen = LAYOUTS[layout]
    fmt = label_format or chosen.label_format
    label_format_named(fmt)  # an unknown name is the one-line error of label_formats
    chosen.label_folder(fmt)  # one the layout does not ship is an error now, before any drawing
    size = tuple(size or SCENE_FILES[layout].size)
    n_val = _check(chosen, count, seed, val_fraction)
    out = ensure_writable_dir(out)
    photos = out / chosen.photos
    if photos.is_dir() and any(photos.iterdir()):
        raise CitysegError(f"{photos} is not empty; choose an empty output folder for the scenes")
    flat = chosen.split_folders == "never" or (chosen.split_folders == "optional" and n_val == 0)
    splits = [("all" if flat else "train", count - n_val), ("val", n_val)]
    start, pixels, index = time.perf_counter(), np.zeros(256, dtype=np.int64), 0
    for split, n in splits:
        for number in range(n):
            photo, label_ids = render_scene(np.random.default_rng([seed, index]), size)
            photo_name, label_name = scene_paths(chosen, split, number, fmt, flat)
            _write(out / photo_name, out / label_name, photo, label_ids, fmt)
            pixels += np.bincount(label_ids.ravel(), minlength=256)
            index += 1
    counts = {split: n for split, n in splits if n}
    shares = train_class_shares(pixels[:NUM_LABEL_IDS])
    return LayoutSummary(out, chosen, fmt, counts, size, shares, time.perf_counter() - start)


def _check(layout: Layout, count: int, seed: int, val_fraction: float) -> int:
    check_scene_arguments(count, seed, val_fraction)
    n_val = round(count * val_fraction)
    if n_val and layout.split_folders == "never":
        raise CitysegError(f"{layout.title} has no val folder (it is split by seed when read); drop --val-fraction")
    return n_val


def _write(photo_path: Path, label_path: Path, photo: np.ndarray, label_ids: np.ndarray, fmt: str) -> None:
    try:
        photo_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(label_path) as tmp:
            write_label_file(tmp, label_ids, fmt)
        with atomic_path(photo_path) as tmp:
            if photo_path.suffix.lower() in (".jpg", ".jpeg"):
                Image.fromarray(photo).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
            else:
                Image.fromarray(photo).save(tmp, format="PNG")
    except OSError as exc:
        raise CitysegError(
            f"cannot write {photo_path}: {exc.strerror or exc}; free some space or choose another folder"
        ) from None
