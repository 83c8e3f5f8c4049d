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
    "voc": SceneFiles("2026_{i:06d}.jpg"),
    "cvat-cityscapes": SceneFiles("{split}/synth/synth_000000_{i:06d}_leftImg8bit.png", size=(128, 256)),
    "roboflow": SceneFiles("{i:05d}_png.rf.{i:08x}.jpg"),
    "coco-panoptic": SceneFiles("{i:06d}.jpg"),
    "coco": SceneFiles("{i:06d}.jpg"),
    "split-folders": SceneFiles("{i:05d}.png"),
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
    photo, label = f"{layout.photos}/{photo}".lstrip("/"), f"{layout.label_folder(label_format)}/{label}".lstrip("/")
    if layout.within_splits:  # ROOT/<split>/...: Roboflow calls its val split "valid"
        folder = SPLIT_FOLDER_NAMES.get((layout.name, split), split)
        photo, label = f"{folder}/{photo}", f"{folder}/{label}"
    return photo, label


SPLIT_FOLDER_NAMES = {("roboflow", "val"): "valid"}


class SceneWriter:
    """Writes each scene as a photo and a label image where its layout keeps them (the public datasets).

    Annotation tools' exports (:mod:`cityseg.synth.exports`) are writers of their own: they encode the labels
    their way and write their class lists, image lists and annotation files once every scene is drawn.
    """

    def __init__(self, out: Path, layout: Layout, label_format: str, flat: bool):
        self.out, self.layout, self.label_format, self.flat = out, layout, label_format, flat

    def check_empty(self) -> None:
        """Refuse an output that already holds a dataset's photos (never mix generated and real files)."""
        photos = self.out / self.layout.photos
        if self.layout.photos and photos.is_dir() and any(photos.iterdir()):
            raise CitysegError(f"{photos} is not empty; choose an empty output folder for the scenes")
        if not self.layout.photos and any(self.out.iterdir()):
            raise CitysegError(f"{self.out} is not empty; choose an empty output folder for the scenes")

    def scene(self, split: str, number: int, photo: np.ndarray, label_ids: np.ndarray) -> None:
        photo_name, label_name = scene_paths(self.layout, split, number, self.label_format, self.flat)
        _write(self.out / label_name, None, self.label_pixels(label_ids))
        _write(self.out / photo_name, photo, None)

    def label_pixels(self, label_ids: np.ndarray) -> Image.Image:
        """The label image of a scene's official label ids, in the layout's format."""
        return Image.fromarray(LABEL_ENCODERS[self.label_format](label_ids))

    def finish(self, counts: dict[str, int]) -> None:
        """Write what the layout keeps beside the scenes (class lists, image lists, annotation files)."""


def write_labelled(
    out: str | Path,
    layout: str,
    count: int = 20,
    seed: int = 0,
    val_fraction: float = 0.0,
    size: tuple[int, int] | None = None,
    label_format: str | None = None,
    writer: type[SceneWriter] = SceneWriter,
) -> LayoutSummary:
    """Write ``count`` scenes into ``out`` in the folders and formats of ``layout`` (:data:`~cityseg.layouts.LAYOUTS`).

    Scene ``i`` is drawn from ``np.random.default_rng([seed, i])``, so the same seed gives the same files.

    Args:
        out: the dataset's root (its photos folder must be empty or absent).
        layout: a name of :data:`~cityseg.layouts.LAYOUTS` (an export's: :func:`cityseg.synth.write_layout`).
        count, seed: how many scenes, and the seed.
        val_fraction: the last ``round(count * val_fraction)`` scenes go to the val split (a layout without split
            folders takes none: its split is made by seed when it is read).
        size: (height, width); default the layout's :attr:`SceneFiles.size` (:data:`SCENE_FILES`).
        label_format: ``labelids``, ``trainids`` or ``color``; default the layout's own.
        writer: how scenes are written (:class:`SceneWriter`, or an export's).

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
    flat = chosen.split_folders == "never" or (chosen.split_folders == "optional" and n_val == 0)
    scenes = writer(out, chosen, fmt, flat)
    scenes.check_empty()
    pooled = flat and not chosen.within_splits and not chosen.image_sets  # one pool: split by seed when read
    splits = [("all" if pooled else "train", count - n_val), ("val", n_val)]
    start, pixels, index = time.perf_counter(), np.zeros(256, dtype=np.int64), 0
    for split, n in splits:
        for number in range(n):
            photo, label_ids = render_scene(np.random.default_rng([seed, index]), size)
            scenes.scene(split, index if chosen.image_sets else number, photo, label_ids)  # one folder: unique
            pixels += np.bincount(label_ids.ravel(), minlength=256)
            index += 1
    counts = {split: n for split, n in splits if n}
    scenes.finish(counts)
    shares = train_class_shares(pixels[:NUM_LABEL_IDS])
    return LayoutSummary(out, chosen, fmt, counts, size, shares, time.perf_counter() - start)


def _check(layout: Layout, count: int, seed: int, val_fraction: float) -> int:
    check_scene_arguments(count, seed, val_fraction)
    n_val = round(count * val_fraction)
    if n_val and layout.split_folders == "never" and not layout.image_sets:
        raise CitysegError(f"{layout.title} has no val folder (it is split by seed when read); drop --val-fraction")
    return n_val


def _write(path: Path, photo: np.ndarray | None, label: Image.Image | None) -> None:
    """Write a photo (JPEG or PNG by its suffix) or, with ``photo`` None, a label image (PNG), atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if photo is None:
                label.save(tmp, format="PNG")
            elif path.suffix.lower() in (".jpg", ".jpeg"):
                Image.fromarray(photo).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
            else:
                Image.fromarray(photo).save(tmp, format="PNG")
    except OSError as exc:
        raise CitysegError(
            f"cannot write {path}: {exc.strerror or exc}; free some space or choose another folder"
        ) from None


def write_text(path: Path, text: str) -> None:
    """Write a class list, image list or annotation file atomically, a disk error one line."""
    from cityseg.files import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise CitysegError(
            f"cannot write {path}: {exc.strerror or exc}; free some space or choose another folder"
        ) from None
