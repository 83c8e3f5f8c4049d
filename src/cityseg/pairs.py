"""Reading paired datasets: find the pair images of a dataset and split each into photo and colour mask.

A *pair image* is a photo and its colour-coded label mask side by side, each half as wide as the image
is tall (the pix2pix / Kaggle "cityscapes image pairs" format, 512x256). This module finds them on disk,
in any of the layouts they are shared in, and decodes one when asked; nothing here keeps decoded images.

The official Cityscapes release is read too: full-resolution photos in
``ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png``, each with its exact label ids in
``ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png`` (:func:`read_release`). Its photos
take the place of pair images everywhere (:func:`discover` lists them), and their labels need no colour
recovery: :class:`cityseg.labels.LabelCache` maps the ids to classes directly.

Every problem with a file is a one-line :class:`~cityseg.errors.CitysegError` that names the file and
says what to do, so a bad image in a folder of thousands is found at once, not by a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cityseg.defaults import MASK_SIDES
from cityseg.errors import CitysegError
from cityseg.files import natural_key
from cityseg.images import DECODE_ERRORS, decode_image, decode_raw, is_image_name

SPLITS = ("train", "val")
RELEASE_PHOTOS = "leftImg8bit"  # the release's photo folder (ROOT/leftImg8bit/{split}/{city}/) and name suffix
RELEASE_TRUTH = "gtFine"  # the release's fine annotations, beside it (ROOT/gtFine/{split}/{city}/)
RELEASE_PHOTO_SUFFIX = "_leftImg8bit.png"
RELEASE_TRUTH_SUFFIX = "_gtFine_labelIds.png"
RELEASE_SPLITS = ("train", "val", "test")
RELEASE_FIRST_LABELLED_ID = 7  # ids 0-6 are void (unlabeled, ego vehicle, ...): a truth of only those is unlabelled
RELEASE_TEST_PROBES = 3  # truth files of the test split looked at to decide whether it is labelled
LAYOUTS = ("cityscapes_data", "cityscapes", "")  # Kaggle, pix2pix, then the root itself holding train/ and val/


def is_pair_image(path: str | os.PathLike) -> bool:
    """True for an image file that can be a pair: an image suffix, not hidden, not a ``*_labelIds.png`` truth file."""
    return is_image_name(path)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The pair images directly inside ``folder``, in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if is_pair_image(p) and p.is_file()]
    except OSError as exc:
        raise CitysegError(f"cannot list dataset folder {folder}: {exc.strerror or exc}; check the path") from None
    return sorted(entries, key=natural_key)


def discover(
    root: str | os.PathLike, split: str | None = None, label_format: str = "auto", skip_bad: bool = False
) -> dict[str, list[Path]]:
    """Find the pair images of a dataset, by split.

    Layouts recognised, first match wins: the official Cityscapes release (``root/leftImg8bit`` exists;
    see :func:`discover_release`: its photos, not pair images), a labelled folder of photos and label images
    (KITTI, BDD100K, ACDC, Dark Zurich, ``images/`` + ``labels/``: :func:`cityseg.labelled_folders.open_labelled`, its
    photos), ``root/cityscapes_data/{train,val}`` (Kaggle), ``root/cityscapes/{train,val}`` (pix2pix),
    ``root/{train,val}``, or ``root`` itself holding the pair images (split ``"all"``). Non-image files and
    ``*_labelIds.png`` truth files are ignored.

    Args:
        root: dataset folder.
        split: ``"train"`` or ``"val"`` (or the release's ``"test"``) to return only that split; ``None`` for
            every split found.
        label_format: ``data.label_format``: ``auto`` (the layout's own), ``pairs``, ``labelids``, ``trainids``
            or ``color``; one the layout does not have is an error.
        skip_bad: a labelled folder's photos without a label and labels without a photo are left out (with a
            warning listing them) instead of stopping.

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
    if (root / RELEASE_PHOTOS).is_dir():
        if label_format not in ("auto", "", "labelids"):
            raise CitysegError(
                f"{root} is the Cityscapes release, whose gtFine labels are label ids; "
                f"data.label_format must be auto or labelids, not {label_format}"
            )
        found = discover_release(root)
        if split is None:
            return found
        if split not in found:
            raise CitysegError(
                f"Cityscapes release {root} has no labelled {split!r} photos; splits: {', '.join(found)}"
            )
        return {split: found[split]}
    labelled = _labelled_splits(root, label_format, skip_bad)
    if labelled is not None:
        return labelled if split is None else _one_split(root, labelled, split)
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
    return found if split is None else _one_split(root, found, split)


def _one_split(root: Path, found: dict[str, list[Path]], split: str) -> dict[str, list[Path]]:
    if split not in found:
        raise CitysegError(f"dataset {root} has no {split!r} images; splits found: {', '.join(found)}")
    return {split: found[split]}


def _labelled_splits(root: Path, label_format: str, skip_bad: bool) -> dict[str, list[Path]] | None:
    """The photos of a labelled folder at ``root`` by split, or None for pair images."""
    from cityseg.labelled_folders import open_labelled
    from cityseg.layouts import find_layout

    layout = find_layout(root)
    if layout is None:
        if label_format not in ("auto", "", "pairs"):
            raise CitysegError(
                f"{root} holds no photos and labels folders (images/ + labels/, KITTI, BDD100K, ACDC, Dark Zurich); "
                f"data.label_format={label_format} needs them (pair images take auto or pairs)"
            )
        return None
    if label_format == "pairs":
        raise CitysegError(
            f"{root} is {layout.title}: photos and label images, not pair images; drop data.label_format=pairs "
            "(auto reads its labels)"
        )
    return open_labelled(root, label_format, skip_bad).splits


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
    image = decode_raw(path)
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

    Grayscale, palette, RGBA and CMYK images are converted to RGB (alpha is dropped, 16-bit values
    scaled), and the EXIF orientation of camera photos is applied: :func:`cityseg.images.decode_image`.

    Raises:
        CitysegError: the file is missing, empty, not an image, corrupt or truncated.
    """
    return np.array(decode_image(path).image)


# ---- the official Cityscapes release ----------------------------------------------------------


def is_release_photo(path: str | os.PathLike) -> bool:
    """True for a photo of the Cityscapes release: ``.../leftImg8bit/{split}/{city}/*_leftImg8bit.png``.

    Example:
        >>> is_release_photo("cityscapes/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png")
        True
        >>> is_release_photo("cityscapes_pairs/train/1.jpg")
        False
    """
    parts = Path(path).parts
    return len(parts) >= 4 and parts[-1].endswith(RELEASE_PHOTO_SUFFIX) and parts[-4] == RELEASE_PHOTOS


def release_truth_path(photo_path: str | os.PathLike) -> Path:
    """The ``gtFine`` label-id file of a release photo (see :func:`is_release_photo`).

    Example:
        >>> release_truth_path("cs/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png").as_posix()
        'cs/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png'

    Raises:
        CitysegError: ``photo_path`` is not laid out as a release photo.
    """
    photo = Path(photo_path)
    if not is_release_photo(photo):
        raise CitysegError(
            f"{photo} is not a Cityscapes release photo (ROOT/{RELEASE_PHOTOS}/SPLIT/CITY/*{RELEASE_PHOTO_SUFFIX}); "
            "keep the release's folder layout"
        )
    city, split, root = photo.parent, photo.parent.parent, photo.parent.parent.parent.parent
    name = photo.name[: -len(RELEASE_PHOTO_SUFFIX)] + RELEASE_TRUTH_SUFFIX
    return root / RELEASE_TRUTH / split.name / city.name / name


def _release_photos(folder: Path) -> list[Path]:
    """The ``*_leftImg8bit.png`` photos of every city folder under ``folder``, cities and frames in natural order."""
    try:
        cities = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
        return [
            photo
            for city in cities
            for photo in sorted(city.glob(f"*{RELEASE_PHOTO_SUFFIX}"), key=natural_key)
            if not photo.name.startswith(".")
        ]
    except OSError as exc:
        raise CitysegError(f"cannot list dataset folder {folder}: {exc.strerror or exc}; check the path") from None


def _has_labels(photos: Sequence[Path]) -> bool:
    """Whether a split's truth is there and labelled, judged on its first few photos.

    The release's test split ships gtFine files without the real labels (every pixel a void id), so
    scoring on it would measure nothing; a split whose first files are missing or all void is left out.
    """
    for photo in photos[:RELEASE_TEST_PROBES]:
        truth = release_truth_path(photo)
        if not truth.is_file():
            return False
        try:
            with Image.open(truth) as image:
                if int(np.asarray(image).max(initial=0)) >= RELEASE_FIRST_LABELLED_ID:
                    return True
        except DECODE_ERRORS:
            return False
    return False


def discover_release(root: str | os.PathLike) -> dict[str, list[Path]]:
    """The photos of a Cityscapes release at ``root``, by split (``train``, ``val``, ``test``; those found).

    The ``train`` and ``val`` photos are listed whether or not their truth is readable (a missing file is
    reported, naming it, when read). The ``test`` split is left out unless its truth files are present and
    labelled: the public release's test annotations are withheld (its gtFine files are all void), so it
    cannot be scored.

    Returns:
        Split name -> photo paths, cities and frames in natural order.

    Raises:
        CitysegError: ``root/leftImg8bit`` holds no photos of any split.

    Example:
        >>> {name: len(paths) for name, paths in discover_release("/data/cityscapes").items()}  # doctest: +SKIP
        {'train': 2975, 'val': 500}
    """
    base = Path(root) / RELEASE_PHOTOS
    found = {name: _release_photos(base / name) for name in RELEASE_SPLITS if (base / name).is_dir()}
    found = {name: photos for name, photos in found.items() if photos}
    if "test" in found and not _has_labels(found["test"]):
        del found["test"]
    if not found:
        raise CitysegError(
            f"no Cityscapes photos (*{RELEASE_PHOTO_SUFFIX}) in {base}/{{train,val}}/CITY/; "
            "check the path or unpack leftImg8bit_trainvaltest.zip there"
        )
    return found


def read_release(photo_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Decode a release photo and its ``gtFine`` label ids.

    Args:
        photo_path: a ``*_leftImg8bit.png`` photo in the release layout (see :func:`release_truth_path`).

    Returns:
        ``(photo, label_ids)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 official label ids (0..33);
        map them to classes with :meth:`cityseg.classes.ClassSet.from_label_ids`.

    Raises:
        CitysegError: either file missing, empty, not an image, corrupt or truncated; a truth file that is
            not single-channel 8-bit; or a truth of another size than the photo.

    Example:
        >>> path = "cs/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
        >>> photo, ids = read_release(path)  # doctest: +SKIP
        >>> photo.shape, ids.shape  # doctest: +SKIP
        ((1024, 2048, 3), (1024, 2048))
    """
    photo_path = Path(photo_path)
    photo = read_photo(photo_path)
    label_ids = read_release_truth(photo_path)
    if label_ids.shape != photo.shape[:2]:
        raise CitysegError(
            f"{release_truth_path(photo_path)} is {label_ids.shape[1]}x{label_ids.shape[0]} but its photo is "
            f"{photo.shape[1]}x{photo.shape[0]}; replace the truth file (or pass --skip-bad)"
        )
    return photo, label_ids


def read_release_truth(photo_path: str | os.PathLike) -> np.ndarray:
    """The ``(H, W)`` uint8 label ids of a release photo, without decoding the photo (see :func:`read_release`)."""
    truth = release_truth_path(photo_path)
    if not truth.exists():
        raise CitysegError(
            f"truth file {truth} is missing for {Path(photo_path).name}; unpack gtFine_trainvaltest.zip beside "
            f"{RELEASE_PHOTOS}/ (or pass --skip-bad)"
        )
    image = decode_raw(truth)
    with image:
        if image.mode not in ("L", "P"):
            raise CitysegError(
                f"{truth} has {_MODE_NAMES.get(image.mode, image.mode)} pixels; a labelIds file holds one 8-bit "
                "label id per pixel: use the release's *_gtFine_labelIds.png, not *_color.png (or pass --skip-bad)"
            )
        return np.array(image, dtype=np.uint8)  # a "P" file's indices are the ids themselves, not its colours
