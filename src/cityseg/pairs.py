"""Reading paired datasets: find the pair images of a dataset and split each into photo and colour mask.

A *pair image* is a photo and its colour-coded label mask side by side, each half as wide as the image
is tall (the pix2pix / Kaggle "cityscapes image pairs" format, 512x256). This module finds them on disk,
in any of the layouts they are shared in, and decodes one when asked; nothing here keeps decoded images.

Every problem with a file is a one-line :class:`~cityseg.errors.CitysegError` that names the file and
says what to do, so a bad image in a folder of thousands is found at once, not by a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cityseg.errors import CitysegError
from cityseg.files import natural_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
TRUTH_SUFFIX = "_labelids.png"  # exact label ids written beside generated pairs (cityseg synth); not pair images
SPLITS = ("train", "val")
LAYOUTS = ("cityscapes_data", "cityscapes", "")  # Kaggle, pix2pix, then the root itself holding train/ and val/
MASK_SIDES = ("right", "left")

# Errors a decoder raises for a file that is not a (complete) image; all become a CitysegError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def is_pair_image(path: str | os.PathLike) -> bool:
    """True for an image file that can be a pair: an image suffix, not hidden, not a ``*_labelIds.png`` truth file."""
    name = Path(path).name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.endswith(TRUTH_SUFFIX) and not name.startswith(".")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The pair images directly inside ``folder``, in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if is_pair_image(p) and p.is_file()]
    except OSError as exc:
        raise CitysegError(f"cannot list dataset folder {folder}: {exc.strerror or exc}; check the path") from None
    return sorted(entries, key=natural_key)


def discover(root: str | os.PathLike, split: str | None = None) -> dict[str, list[Path]]:
    """Find the pair images of a dataset, by split.

    Layouts recognised, first match wins: ``root/cityscapes_data/{train,val}`` (Kaggle),
    ``root/cityscapes/{train,val}`` (pix2pix), ``root/{train,val}``, or ``root`` itself holding the
    pair images (split ``"all"``). Non-image files and ``*_labelIds.png`` truth files are ignored.

    Args:
        root: dataset folder.
        split: ``"train"`` or ``"val"`` to return only that split; ``None`` for every split found.

    Returns:
        Split name -> naturally sorted image paths (``{"train": [...], "val": [...]}`` or ``{"all": [...]}``).

    Raises:
        CitysegError: the folder is missing, holds no pair images, or lacks the requested split.

    Example:
        >>> discover("data/cityscapes_pairs")["train"][:2]  # doctest: +SKIP
        [PosixPath('data/cityscapes_pairs/train/1.jpg'), PosixPath('data/cityscapes_pairs/train/2.jpg')]
    """
    root = Path(root)
    if not root.exists():
        raise CitysegError(f"dataset folder {root} does not exist; check the path (expected train/ and val/ folders)")
    if not root.is_dir():
        raise CitysegError(f"dataset path {root} is a file; pass the folder that holds the pair images")
    found: dict[str, list[Path]] = {}
    for layout in LAYOUTS:
        base = root / layout if layout else root
        split_dirs = {name: base / name for name in SPLITS if (base / name).is_dir()}
        if split_dirs:
            found = {name: list_images(folder) for name, folder in split_dirs.items()}
            found = {name: images for name, images in found.items() if images}
            if not found:
                folders = ", ".join(str(folder) for folder in split_dirs.values())
                raise CitysegError(f"no pair images (.jpg/.png) in {folders}; add images or point to another folder")
            break
    else:
        images = list_images(root)
        if not images:
            raise CitysegError(
                f"no pair images (.jpg/.png) in {root}; expected a folder of pair images or "
                "train/ and val/ folders (also under cityscapes_data/ or cityscapes/)"
            )
        found = {"all": images}
    if split is None:
        return found
    if split not in found:
        raise CitysegError(f"dataset {root} has no {split!r} images; splits found: {', '.join(found)}")
    return {split: found[split]}


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (PIL decodes lazily, so errors would otherwise surface later)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CitysegError(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
    if size == 0:
        raise CitysegError(f"{path} is empty (0 bytes); replace or remove it (or pass --skip-bad)")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise CitysegError(f"{path} is not an image PIL can read; replace or remove it (or pass --skip-bad)") from None
    except _DECODE_ERRORS as exc:
        raise CitysegError(f"cannot open {path}: {_reason(exc)}; replace or remove it (or pass --skip-bad)") from None
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        image.close()
        raise CitysegError(
            f"{path} is corrupt or truncated ({_reason(exc)}); replace or remove it (or pass --skip-bad)"
        ) from None
    return image


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def read_pair(path: str | os.PathLike, mask_side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Decode a pair image and split it into photo and colour mask.

    Args:
        path: an RGB image twice as wide as it is tall.
        mask_side: which half holds the mask, ``"right"`` (the Kaggle and pix2pix files) or ``"left"``.

    Returns:
        ``(photo, mask)``, each ``(H, W, 3)`` uint8 RGB with ``W == H`` for the usual pairs.

    Raises:
        CitysegError: the file is missing, empty, not an image, corrupt or truncated, not RGB (a colour mask
            cannot be recovered from grayscale, and alpha or CMYK are not what the pair format holds), or not
            twice as wide as it is tall.

    Example:
        >>> photo, mask = read_pair("train/1.jpg")  # doctest: +SKIP
        >>> photo.shape, mask.shape  # doctest: +SKIP
        ((256, 256, 3), (256, 256, 3))
    """
    if mask_side not in MASK_SIDES:
        raise CitysegError(f"mask_side must be one of {', '.join(MASK_SIDES)}, not {mask_side!r}")
    path = Path(path)
    image = _open_decoded(path)
    with image:
        width, height = image.size
        if width != 2 * height:
            raise CitysegError(
                f"{path} is {width}x{height}; a pair image is twice as wide as it is tall (photo and mask side by "
                "side): crop or remove it (or pass --skip-bad)"
            )
        mode = image.mode
        if mode == "P" and "transparency" not in image.info:
            image = image.convert("RGB")  # a palette image is only a different encoding of the same RGB colours
        elif mode != "RGB":
            raise CitysegError(
                f"{path} has {_MODE_NAMES.get(mode, mode)} pixels; a pair's colour mask must be RGB: re-save it as "
                "an RGB JPEG or PNG, or remove it (or pass --skip-bad)"
            )
        pixels = np.asarray(image)  # (H, 2H, 3)
    half = pixels.shape[1] // 2
    left, right = pixels[:, :half], pixels[:, half:]
    photo, mask = (left, right) if mask_side == "right" else (right, left)
    return np.ascontiguousarray(photo), np.ascontiguousarray(mask)


_MODE_NAMES = {
    "1": "black-and-white",
    "L": "grayscale",
    "LA": "grayscale+alpha",
    "I": "32-bit grayscale",
    "I;16": "16-bit grayscale",
    "F": "floating-point grayscale",
    "P": "palette+transparency",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
}


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Decode a plain photo (not a pair) as ``(H, W, 3)`` uint8 RGB.

    Grayscale, palette, RGBA and CMYK images are converted to RGB (alpha is dropped), and the EXIF
    orientation of camera photos is applied, so any photo a user has can be segmented.

    Raises:
        CitysegError: the file is missing, empty, not an image, corrupt or truncated.
    """
    path = Path(path)
    image = _open_decoded(path)
    with image:
        try:
            upright = ImageOps.exif_transpose(image)
        except _DECODE_ERRORS:  # a broken EXIF block should not stop a readable photo
            upright = image
        rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
        return np.array(rgb)


class PairIndex(Sequence):
    """A list of pair-image paths that decodes an image only when it is read.

    Args:
        paths: the pair images, e.g. one split of :func:`discover`.
        mask_side: which half of each image holds the mask.

    Example:
        >>> index = PairIndex.from_root("data/cityscapes_pairs", "train")  # doctest: +SKIP
        >>> len(index), index[0].name  # doctest: +SKIP
        (2975, '1.jpg')
        >>> photo, mask = index.read(0)  # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[str | os.PathLike], mask_side: str = "right"):
        if mask_side not in MASK_SIDES:
            raise CitysegError(f"mask_side must be one of {', '.join(MASK_SIDES)}, not {mask_side!r}")
        self.paths = [Path(p) for p in paths]
        self.mask_side = mask_side

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str | None = None, mask_side: str = "right") -> PairIndex:
        """All pair images of ``root`` (or of one ``split``), splits concatenated in name order."""
        return cls([p for images in discover(root, split).values() for p in images], mask_side)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return PairIndex(self.paths[item], self.mask_side)
        return self.paths[item]

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    def read(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """``(photo, mask)`` of image ``item``; see :func:`read_pair`."""
        return read_pair(self.paths[item], self.mask_side)

    def __repr__(self) -> str:
        return f"PairIndex({len(self.paths)} images, mask_side={self.mask_side!r})"
