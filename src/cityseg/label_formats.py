"""Label images that hold their classes exactly: label ids, train ids or colours, read into a class set.

``data.label_format`` says what a dataset's label images hold (:data:`LABEL_FORMATS`):

* ``labelids``: one 8-bit id per pixel: the official Cityscapes label ids (0-33; KITTI, ACDC, Dark Zurich,
  WildDash, GTA5), or a user's class table's own ids. They are mapped to the chosen class set as read.
* ``trainids``: the 19 Cityscapes training classes 0-18, 255 ignored (BDD100K), or a table's class indices.
* ``color``: the official colours (or a table's), in a lossless PNG: each colour is looked up exactly.
  A JPEG is refused, because JPEG shifts the colours along every class edge.
* ``pairs``: the Cityscapes image pairs' JPEG colour masks, which need a labeller (:mod:`cityseg.labels`).

A value the format does not have (40 in a label-id image, a colour of no class) is a one-line error naming
the file, the value and how many pixels hold it: a silently ignored value would train on wrong labels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cityseg.classes import IGNORE_INDEX, ClassSet
from cityseg.errors import CitysegError
from cityseg.images import decode_raw, pack_rgb

FORMAT_HINT = "--label-format (data.label_format)"


@dataclass(frozen=True)
class LabelFormat:
    """What one kind of label image holds, and how it is read into classes.

    Attributes:
        name: the ``data.label_format`` value.
        what: what the values are, for messages.
        decode: (pixels of the file, class set, file name) -> (H, W) uint8 class indices.
    """

    name: str
    what: str
    decode: Callable[[np.ndarray, ClassSet, str], np.ndarray]


def _values_to_classes(values: np.ndarray, lookup: np.ndarray, source: str, what: str, hint: str) -> np.ndarray:
    """Map label values through a (256,) lookup; a value it lacks (-1) is an error naming it and its pixels."""
    if values.max(initial=0) > 255:
        lookup = np.concatenate([lookup, np.full(int(values.max()) - 255, -1, dtype=lookup.dtype)])
    classes = lookup[values]
    if classes.min(initial=0) < 0:
        counts = np.bincount(values[classes < 0].ravel())
        value = int(counts.argmax())
        raise CitysegError(f"{source}: value {value} on {int(counts[value]):,} pixels is not one of the {what}; {hint}")
    return classes.astype(np.uint8)


def _describe(classes: ClassSet, kind: str) -> str:
    if classes.table:
        ignore = ", ".join(str(value) for value in classes.table["ignore"])
        return f"{kind} of class table {classes.name} (ignore {ignore})"
    return "Cityscapes label ids (0-33)" if kind == "ids" else "Cityscapes train ids (0-18, 255 ignored)"


def _decode_label_ids(pixels: np.ndarray, classes: ClassSet, source: str) -> np.ndarray:
    hint = "is this a label-id image?"
    if not classes.table and IGNORE_INDEX in pixels:
        hint = f"if the labels hold train ids (0-18, 255 ignored), say so with {FORMAT_HINT} trainids"
    return _values_to_classes(pixels, classes.id_lookup(), source, _describe(classes, "ids"), hint)


def _decode_train_ids(pixels: np.ndarray, classes: ClassSet, source: str) -> np.ndarray:
    hint = f"if the labels hold label ids, say so with {FORMAT_HINT} labelids"
    return _values_to_classes(pixels, classes.train_id_lookup(), source, _describe(classes, "class indices"), hint)


def _decode_colors(pixels: np.ndarray, classes: ClassSet, source: str) -> np.ndarray:
    packed = pack_rgb(pixels)
    colors, inverse, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)
    known = {(r << 16) | (g << 8) | b: index for (r, g, b), index in classes.color_lookup().items()}
    mapped = np.array([known.get(int(code), -1) for code in colors], dtype=np.int16)
    if (mapped < 0).any():
        unknown = np.flatnonzero(mapped < 0)
        worst = unknown[counts[unknown].argmax()]
        code = int(colors[worst])
        rgb = (code >> 16, (code >> 8) & 0xFF, code & 0xFF)
        where = f"class table {classes.name}" if classes.table else "the Cityscapes palette"
        raise CitysegError(
            f"{source}: colour {rgb} on {int(counts[worst]):,} pixels is no class colour of {where}; "
            f"is it a colour label image in that palette ({FORMAT_HINT})?"
        )
    return mapped.astype(np.uint8)[inverse].reshape(packed.shape)


LABEL_FORMATS: dict[str, LabelFormat] = {
    "labelids": LabelFormat("labelids", "label ids", _decode_label_ids),
    "trainids": LabelFormat("trainids", "train ids", _decode_train_ids),
    "color": LabelFormat("color", "colours", _decode_colors),
}
_ID_MODES = ("L", "P", "I;16", "I")  # one value per pixel; a "P" file's indices are the values, not its colours


def label_format(name: str) -> LabelFormat:
    """The :class:`LabelFormat` called ``name`` (``labelids``, ``trainids``, ``color``)."""
    try:
        return LABEL_FORMATS[name]
    except KeyError:
        raise CitysegError(f"unknown label format {name!r}; choose one of: {', '.join(LABEL_FORMATS)}") from None


def read_label_file(path: str | os.PathLike, format_name: str, classes: ClassSet) -> np.ndarray:
    """The (H, W) uint8 class indices of a label image in ``format_name``, mapped onto ``classes``.

    Raises:
        CitysegError: the file is missing, not an image, corrupt, a JPEG (its values are not exact), of the
            wrong kind (colours where ids are expected, or the reverse), or holds a value the format lacks.

    Example:
        >>> read_label_file("kitti/training/semantic/000000_10.png", "labelids", class_set("train19"))  # doctest: +SKIP
        array([[255, 255, ...]], dtype=uint8)
    """
    fmt = label_format(format_name)
    source = str(path)
    image = decode_raw(path)
    with image:
        if image.format == "JPEG":
            raise CitysegError(
                f"{source} is a JPEG; a label image of {fmt.what} must be lossless (PNG): JPEG changes "
                f"{'the colours' if fmt.name == 'color' else 'the values'} along every class edge, so they are not "
                "exact. Use the original PNG labels (or pass --skip-bad)"
            )
        if fmt.name == "color":
            pixels = _color_pixels(image, source)
        elif image.mode in _ID_MODES:
            pixels = np.asarray(image).astype(np.int64 if image.mode.startswith("I") else np.uint8)
        else:
            raise CitysegError(
                f"{source} has {image.mode} pixels, but {fmt.what} are one value per pixel; colour labels? "
                f"Say so with {FORMAT_HINT} color"
            )
    return fmt.decode(pixels, classes, source)


def _color_pixels(image, source: str) -> np.ndarray:
    if image.mode == "RGBA":
        pixels = np.asarray(image)
        if pixels[..., 3].min() < 255:
            raise CitysegError(f"{source} has transparent pixels; a colour label image is opaque RGB")
        return np.ascontiguousarray(pixels[..., :3])
    if image.mode == "P":
        image = image.convert("RGB")
    if image.mode != "RGB":
        raise CitysegError(
            f"{source} has {image.mode} pixels, not colours; label ids? Say so with {FORMAT_HINT} labelids"
        )
    return np.asarray(image)


def sniff_format(path: str | os.PathLike) -> str:
    """``color`` for an RGB label image, else ``labelids``: what ``auto`` takes an ``images/ + labels/`` folder for.

    Only the header is read. Train ids cannot be told from label ids by looking, so they are never guessed.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return "color" if image.mode in ("RGB", "RGBA") else "labelids"
    except (OSError, ValueError):
        return "labelids"  # unreadable: reading it as labels will name the problem
