"""What a prediction writes: label ids, colour images, overlays, their file names, and the run's summary.

Per photo (:class:`OutputWriter`), each written atomically::

    STEM_<ids>.png     one uint8 id per pixel: class indices, train ids or label ids (ids_encoder)
    STEM_color.png     the class colours (colour_image)
    STEM_overlay.jpg   the colours blended over the photo (overlay_image)

A video's overlay frames (:mod:`cityseg.video`) use the same colours and blend, and its label PNGs the
same writer (:func:`write_label_png`), so a frame and a photo with the same labels give the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cityseg.classes import CLASS_SETS, ClassSet, class_set
from cityseg.defaults import ID_KINDS, OVERLAY_ALPHA
from cityseg.errors import CitysegError
from cityseg.files import atomic_path

if TYPE_CHECKING:
    from cityseg.models import ModelInfo

OVERLAY_JPEG_QUALITY = 90

_ID_SUFFIX = {"train19": "trainIds", "labelids": "labelIds", "categories": "categoryIds"}

# ---- what the label PNG holds -----------------------------------------------------------------


def ids_encoder(info: ModelInfo, ids: str = ID_KINDS[0]) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """How class indices become the values of the label PNG, and the file-name suffix that says what they are.

    Args:
        info: the model's ModelInfo.
        ids: ``classes`` (the model's class indices: train ids for a train19 model), ``trainids`` (Cityscapes
            train ids, 255 = ignored) or ``labelids`` (official label ids 0..33; a class table's own ids).

    Returns:
        (function from (H, W) class indices to (H, W) uint8 ids, suffix such as ``trainIds``).

    Raises:
        CitysegError: the model's classes cannot be written as the ids asked for (e.g. k-means clusters have
            no official label ids).
    """
    if ids not in ID_KINDS:
        raise CitysegError(f"unknown --ids {ids!r}; choose one of: {', '.join(ID_KINDS)}")
    classes = info.classes
    described = f"{info.num_classes} {info.class_set_name} classes"
    if ids == "classes":
        return (lambda labels: labels), _ID_SUFFIX.get(info.class_set_name, "classIds")
    if ids == "trainids":
        if info.class_set_name == "train19":
            return (lambda labels: labels), "trainIds"
        if info.class_set_name == "labelids":
            train19 = class_set("train19")
            return (lambda labels: train19.from_label_ids(labels)), "trainIds"
        raise CitysegError(
            f"the model predicts {described}, which have no Cityscapes train ids; use --ids classes or --ids labelids"
        )
    if info.class_table is None and (info.class_set_name == "kmeans" or info.class_set_name not in CLASS_SETS):
        raise CitysegError(
            f"the model predicts {described} (colour clusters), which have no official label ids; "
            "use --ids classes (cluster indices), or train with labels.method=palette"
        )
    return classes.to_label_ids, "labelIds"


# ---- names and the summary ---------------------------------------------------------------------


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per input: the file stem, prefixed with its folder (then numbered) on a clash."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem = path.stem
        if stem in used:
            stem = f"{path.parent.name}_{path.stem}"
        base, number = stem, 2
        while stem in used:
            stem, number = f"{base}-{number}", number + 1
        used.add(stem)
        stems.append(stem)
    return stems


@dataclass
class PredictSummary:
    """What :func:`cityseg.predict.predict_files` did: files written, inputs skipped, per-image timings (ms)."""

    out_dir: Path
    backend: str
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # decode + preprocess share + model share + resize back
    model_ms: list[float] = field(default_factory=list)  # model share alone (batch time / batch size)
    # one cityseg.video.VideoSummary per video (typed loosely: the video package sits above this module)
    videos: list[Any] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.latency_ms)

    def __str__(self) -> str:
        lines = []
        if self.images or not self.videos:
            lines.append(f"predicted {self.images} image(s) with {self.backend} into {self.out_dir}")
        if self.latency_ms:
            median, p90 = np.percentile(self.latency_ms, [50, 90])
            lines.append(
                f"latency per image: median {median:.1f} ms, p90 {p90:.1f} ms (decode, model, resize back; "
                f"model alone: median {np.median(self.model_ms):.1f} ms)"
            )
        lines += [str(video) for video in self.videos]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable {'file' if self.videos else 'image'}(s):")
            lines += [f"  {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


# ---- the images ---------------------------------------------------------------------------------


@dataclass
class OutputWriter:
    """Writes the three images of one prediction into ``out_dir``, each atomically.

    ``STEM_<suffix>.png`` (uint8 ids, see :func:`ids_encoder`), ``STEM_color.png`` (the class colours) and
    ``STEM_overlay.jpg`` (the colours blended over the photo with weight ``alpha``).
    """

    out_dir: Path
    classes: ClassSet
    to_ids: Callable[[np.ndarray], np.ndarray]
    suffix: str
    alpha: float = OVERLAY_ALPHA

    def write(self, stem: str, photo: Image.Image, labels: np.ndarray) -> list[Path]:
        """Write the outputs of ``labels`` ((H, W) uint8 class indices) over ``photo`` (RGB, W x H)."""
        ids_path = self.out_dir / f"{stem}_{self.suffix}.png"
        color_path = self.out_dir / f"{stem}_color.png"
        overlay_path = self.out_dir / f"{stem}_overlay.jpg"
        write_label_png(ids_path, self.to_ids(labels))
        colour = colour_image(labels, self.classes)
        _save(colour, color_path, compress_level=1)  # fast zlib: large label images are mostly flat runs
        _save(overlay_image(photo, colour, self.alpha), overlay_path, quality=OVERLAY_JPEG_QUALITY)
        return [ids_path, color_path, overlay_path]


def colour_image(labels: np.ndarray, classes: ClassSet) -> Image.Image:
    """(H, W) uint8 class indices as RGB in the class colours: the colour PNG, and what overlays blend in."""
    colour = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    colour.putpalette(classes.palette().reshape(-1).tolist())  # colours by table lookup inside PIL
    return colour.convert("RGB")


def overlay_image(photo: Image.Image, colour: Image.Image, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The class colours (:func:`colour_image`) blended over ``photo`` with weight ``alpha``: a photo's
    ``STEM_overlay.jpg``, and each frame of a video's overlay (:func:`cityseg.video.draw_overlay`)."""
    return Image.blend(photo, colour, alpha)


def write_label_png(path: Path, ids: np.ndarray) -> None:
    """(H, W) uint8 ids as a one-channel PNG, atomically, with fast zlib (label images are flat runs).

    Raises:
        CitysegError: the file cannot be written (no space, no permission).
    """
    _save(Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8)), path, compress_level=1)


def _save(image: Image.Image, path: Path, **options: Any) -> None:
    """Write ``image`` atomically (a JPEG for ``.jpg``, else a PNG), or a one-line error."""
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)
    except OSError as exc:
        raise CitysegError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
