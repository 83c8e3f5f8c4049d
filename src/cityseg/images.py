"""Decoding images: the one decoder behind every stage (pairs, prediction, the server).

A source is a file path, the bytes of a file (an upload), a PIL image or a uint8 array::

    decode_image(source, target_size)  -> Photo: upright RGB, reduced towards target_size, and its own (H, W)
    decode_raw(source)                 -> the PIL image fully decoded, mode and orientation as stored

:func:`decode_image` applies the EXIF orientation of camera photos and turns every mode into RGB
(grayscale, palette, RGBA, CMYK, and 16-bit or float grayscale scaled into 8 bits rather than clipped).
With ``target_size`` a large file is decoded reduced: JPEG by DCT scaling (``Image.draft``, 1/2 to 1/8),
other formats by an integer ``Image.reduce``, both stopping at twice the target so the final resize
(training's own) still has detail to average. :func:`decode_raw` is for files whose pixels are data,
not a photo: pair images and label-id files.

Every problem is a :class:`DecodeError`, one type per kind of problem, with a one-line message naming
the file (``source``) and the decoder's own reason (``reason``); the CLI prints the message, the server
maps the type to an HTTP answer.

Example:
    >>> photo = decode_image("street.jpg", target_size=(512, 1024))  # doctest: +SKIP
    >>> photo.size, photo.image.size  # the photo's (H, W); the decoded image, (W, H), maybe reduced  # doctest: +SKIP
    ((3000, 4000), (1000, 750))
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cityseg.errors import CitysegError, first_line
from cityseg.files import natural_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")  # what cityseg predict reads as a video (cityseg.video)
LABEL_ID_SUFFIX = "_labelids.png"  # label-id images (X_labelIds.png, X_gtFine_labelIds.png): never photos; lower case
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations rotated by 90 degrees: the upright photo is height x width
SKIP_ADVICE = "replace or remove it (or pass --skip-bad)"

# The most pixels one byte of a complete file can describe, with room to spare: deflate (PNG) expands at most
# about 1032 times and a 1-bit image packs 8 pixels into a byte; a JPEG spends at least one bit on every 8x8 block.
# A header claiming more pixels than that is of a file cut short or crafted, refused before the pixels' memory is
# taken (a 2 kB file would otherwise make PIL allocate a 100-megapixel image before it finds the data missing).
MAX_PIXELS_PER_BYTE = {"PNG": 2 * 8 * 1032, "JPEG": 4 * 512}

# Errors a decoder raises for a file that is not a (complete) image; all become a DecodeError. TypeError: PIL's TIFF
# and EXIF parsers meet a rational where an integer belongs in a damaged file (found by fuzzing).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, UnidentifiedImageError, Image.DecompressionBombError)

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


# ---- what can go wrong ----------------------------------------------------------------------------


class DecodeError(CitysegError):
    """An image that cannot be decoded: ``source`` names it, ``reason`` is the decoder's first line (or "")."""

    def __init__(self, message: str, source: str, reason: str = ""):
        super().__init__(message)
        self.source = source
        self.reason = reason


class UnreadableFileError(DecodeError):
    """The file cannot be read at all (missing, no permission)."""


class EmptyImageError(DecodeError):
    """Zero bytes."""


class NotAnImageError(DecodeError):
    """No decoder recognises the data (or not one of the formats allowed)."""


class ImageTooLargeError(DecodeError):
    """Too many pixels: PIL's decompression-bomb limit, or the caller's ``max_pixels`` / ``max_side``.

    ``size`` is (width, height) when the header was read, else None.
    """

    def __init__(self, message: str, source: str, reason: str = "", size: tuple[int, int] | None = None):
        super().__init__(message, source, reason)
        self.size = size


class CorruptImageError(DecodeError):
    """A recognised format whose header cannot be read."""


class TruncatedImageError(CorruptImageError):
    """The header was read but the pixels cannot be decoded: corrupt or cut short."""


# ---- finding images -------------------------------------------------------------------------------------


def is_image_name(path: str | os.PathLike) -> bool:
    """True for a name with an image suffix that is not hidden and not a ``*_labelIds.png`` label-id image.

    Example:
        >>> is_image_name("frames/10.JPG"), is_image_name("7_labelIds.png"), is_image_name(".1.jpg")
        (True, False, False)
    """
    name = Path(path).name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.endswith(LABEL_ID_SUFFIX) and not name.startswith(".")


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files, folders (the images directly inside, natural order) and glob patterns.

    Raises:
        CitysegError: a path that does not exist, a folder or pattern without images, or no inputs at all.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        text = str(item)
        if path.is_dir():
            images = sorted((p for p in path.iterdir() if is_image_name(p) and p.is_file()), key=natural_key)
            if not images:
                raise CitysegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}; check the path")
            found += images
        elif path.exists():
            found.append(path)
        elif any(char in text for char in "*?["):
            matches = sorted(
                (Path(p) for p in glob.glob(text, recursive=True) if is_image_name(Path(p)) and Path(p).is_file()),
                key=natural_key,
            )
            if not matches:
                raise CitysegError(f"no images match {text}; check the pattern (quote it so the shell leaves it)")
            found += matches
        else:
            raise CitysegError(f"input {text} does not exist; pass image files, folders or glob patterns")
    if not found:
        raise CitysegError("no input images given; pass image files, folders or glob patterns")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


# ---- decoding -----------------------------------------------------------------------------------------


@dataclass
class Photo:
    """A decoded photo: ``image`` upright RGB, possibly reduced for the model; ``size`` (H, W) of the original."""

    image: Image.Image
    size: tuple[int, int]

    @property
    def full_size(self) -> bool:
        return (self.image.height, self.image.width) == tuple(self.size)


def decode_image(
    source: ImageSource,
    target_size: tuple[int, int] | None = None,
    *,
    formats: tuple[str, ...] | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
    name: str | None = None,
) -> Photo:
    """Decode a photo as upright RGB, small enough for the model but remembering its original size.

    Args:
        source: a file path, the bytes of an image file, a PIL image, or an (H, W, 3) / (H, W) / (H, W, 1) /
            (H, W, 4) uint8 array.
        target_size: (h, w) the model runs at; None decodes at full size.
        formats: PIL format names a file or bytes may be in (e.g. ``("JPEG", "PNG")``); None allows all.
        max_pixels, max_side: refuse a file or bytes whose header says more pixels (area, longest side),
            before any pixel is decoded.
        name: how messages call the source (default: its path, or "image data" for bytes).

    Returns:
        A :class:`Photo`.

    Raises:
        DecodeError: missing, empty, unrecognised, too large, corrupt or truncated (one subclass each).
        CitysegError: an array that is not a uint8 image.
    """
    if isinstance(source, np.ndarray):
        pil = _array_to_image(source)
        return Photo(_reduce(pil, target_size), (pil.height, pil.width))
    if isinstance(source, Image.Image):
        rgb = _to_rgb(source)
        return Photo(_reduce(rgb, target_size), (rgb.height, rgb.width))
    pil, label = _open(source, formats, max_pixels, max_side, name)
    width, height = pil.size
    orientation = _exif_orientation(pil)
    if orientation in TURNED:
        width, height = height, width
    # orientation-proof: at least twice the target on both sides
    draft_side = 2 * max(target_size) if target_size is not None and pil.format == "JPEG" else None
    _load(pil, label, draft_side)
    upright = pil
    if orientation != 1:
        with contextlib.suppress(*DECODE_ERRORS):  # a broken EXIF block should not stop a readable photo
            upright = ImageOps.exif_transpose(pil)
    return Photo(_reduce(_to_rgb(upright), target_size), (height, width))


def image_size(source: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as :func:`decode_image` gives it (EXIF orientation applied), from its header alone.

    Raises:
        DecodeError: as :func:`decode_image`, for what the header shows.
    """
    pil, _ = _open(source, None, None, None, None)
    with pil:
        width, height = pil.size
        if _exif_orientation(pil) in TURNED:
            width, height = height, width
    return height, width


def decode_raw(
    source: str | os.PathLike | bytes, *, formats: tuple[str, ...] | None = None, name: str | None = None
) -> Image.Image:
    """Open and fully decode a file or bytes, pixels as stored: no orientation, no mode conversion.

    PIL decodes lazily, so this decodes at once and errors surface here, not later. Use it as a context
    manager (``with decode_raw(path) as image:``) to close it.

    Raises:
        DecodeError: as :func:`decode_image`.
    """
    pil, label = _open(source, formats, None, None, name)
    _load(pil, label, None)
    return pil


def _open(
    source: str | os.PathLike | bytes,
    formats: tuple[str, ...] | None,
    max_pixels: int | None,
    max_side: int | None,
    name: str | None,
) -> tuple[Image.Image, str]:
    """PIL's lazy image (header read, no pixels) and the source's name for messages."""
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "image data"
        file_size = len(source)
        if not source:
            raise EmptyImageError(f"{label} is empty (0 bytes); {SKIP_ADVICE}", label)
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        label = name or str(stream)
        try:
            file_size = stream.stat().st_size
            if file_size == 0:
                raise EmptyImageError(f"{label} is empty (0 bytes); {SKIP_ADVICE}", label)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UnreadableFileError(f"cannot read {label}: {reason}; check the path", label, reason) from None
    try:
        pil = Image.open(stream, formats=formats)
    except UnidentifiedImageError:
        raise NotAnImageError(f"{label} is not an image PIL can read; {SKIP_ADVICE}", label) from None
    except Image.DecompressionBombError as exc:
        reason = first_line(exc)
        raise ImageTooLargeError(
            f"{label} is too large to decode safely ({reason}); downscale it first", label, reason
        ) from None
    except DECODE_ERRORS as exc:
        reason = first_line(exc)
        raise CorruptImageError(f"cannot open {label}: {reason}; {SKIP_ADVICE}", label, reason) from None
    width, height = pil.size
    if (max_pixels is not None and width * height > max_pixels) or (max_side is not None and max(pil.size) > max_side):
        pil.close()
        raise ImageTooLargeError(
            f"{label} is {width}x{height} pixels, over the limit of {(max_pixels or 0) / 1e6:g} megapixels "
            f"and {max_side} pixels a side; downscale it",
            label,
            size=(width, height),
        )
    if width * height > MAX_PIXELS_PER_BYTE.get(pil.format, width * height) * file_size:
        pil.close()
        raise TruncatedImageError(
            f"{label} says it is {width}x{height} pixels but holds only {file_size} bytes, too few for that: "
            f"it is cut short or damaged; {SKIP_ADVICE}",
            label,
            "too few bytes for its size",
        )
    return pil, label


def _load(pil: Image.Image, label: str, draft_side: int | None) -> None:
    """Decode the pixels (at a reduced JPEG scale with ``draft_side``); closes a single-frame file."""
    try:
        if draft_side is not None:
            pil.draft(None, (draft_side, draft_side))
        pil.load()
    except DECODE_ERRORS as exc:
        pil.close()
        reason = first_line(exc)
        raise TruncatedImageError(f"{label} is corrupt or truncated ({reason}); {SKIP_ADVICE}", label, reason) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any PIL mode; 16-bit and float grayscale are scaled to 8 bits first (PIL would clip them)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16"):
            values = values / 257  # the full 16-bit range onto 0..255
        else:  # 32-bit integer or float: no fixed range, so stretch what is there
            values = (values - values.min()) * (255 / max(float(values.max() - values.min()), 1e-6))
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def _exif_orientation(pil: Image.Image) -> int:
    try:
        return int(pil.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # unreadable EXIF: treat the photo as upright
        return 1


def _reduce(image: Image.Image, target_size: tuple[int, int] | None) -> Image.Image:
    """Shrink by a whole factor while the image stays at least twice ``target_size`` (cheap box filter)."""
    if target_size is None:
        return image
    factor = min(image.width // (2 * target_size[1]), image.height // (2 * target_size[0]))
    return image.reduce(factor) if factor >= 2 else image


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise CitysegError(
            f"expected a uint8 image array, got {array.dtype}; scale it to 0..255 and use .astype(np.uint8)"
        )
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))
    raise CitysegError(f"expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray image array, got {array.shape}")


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 index r<<16 | g<<8 | b into a 2^24-entry table.

    A C-contiguous array is packed in one pass: each pixel's 3 bytes and the first byte of the next pixel
    are read as one big-endian uint32 (r<<24 | g<<16 | b<<8 | next) through a view with a 3-byte stride,
    and the extra byte is shifted out. That is 3-4x cheaper than widening and combining three channel
    planes; the last pixel, which has no byte after it, is packed on its own.

    Example:
        >>> int(pack_rgb(np.array([1, 2, 3], np.uint8)))
        66051
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    packed = np.empty(rgb.shape[:-1], dtype=np.uint32)
    flat = packed.reshape(-1)
    if rgb.flags.c_contiguous and len(flat) >= 2:
        words = np.ndarray((len(flat) - 1,), dtype=">u4", buffer=rgb, strides=(3,))
        np.right_shift(words, 8, out=flat[:-1])
        r, g, b = rgb.reshape(-1, 3)[-1].tolist()
        flat[-1] = r << 16 | g << 8 | b
    else:
        np.left_shift(rgb[..., 0], 16, out=packed, dtype=np.uint32)
        packed |= np.left_shift(rgb[..., 1], 8, dtype=np.uint32)
        packed |= rgb[..., 2]
    return packed
