"""Datasets of photos and label images: the street datasets that speak Cityscapes ids, and a user's own.

A *labelled folder* is a folder of photos and a folder of label images, matched by file name. The known
layouts (:data:`LAYOUTS`) are recognised by their folder names, as the pairs and the Cityscapes release are
(:func:`cityseg.pairs.discover` asks :func:`find_layout` first):

==============  ===========================================  =====================================  ==========
layout          photos                                       labels                                 holds
==============  ===========================================  =====================================  ==========
``kitti``       ``training/image_2/*.png``                   ``training/semantic/*.png``            label ids
``bdd100k``     ``images/10k/{train,val}/*.jpg``             ``labels/sem_seg/masks/{train,val}``   train ids
``acdc``        ``rgb_anon/{fog,night,rain,snow}/SPLIT/SEQ``  ``gt/...`` (``*_gt_labelIds.png``)     label ids
``darkzurich``  ``rgb_anon/{train,val}/night/SEQ``           ``gt/...`` (``*_gt_labelIds.png``)     label ids
``images``      ``images/`` (GTA5, WildDash, your own)       ``labels/``                            label ids
==============  ===========================================  =====================================  ==========

(``images/`` + ``labels/`` holding RGB label images is read as colours; train ids are never guessed: say
``data.label_format=trainids``.)

A photo and a label match when they lie in the same sub-folder of their folders and their names agree once
the suffixes of :data:`NAME_SUFFIXES` (the one table of them) are stripped: ``X_leftImg8bit.png`` and
``X_gtFine_labelIds.png``, ``X_rgb_anon.png`` and ``X_gt_labelIds.png``, ``X.jpg`` and ``X.png``. Label
files with the suffix of another format (``X_color.png`` beside label ids) are not labels of this one.

Splits are the dataset's own: the first sub-folder named ``train``, ``val`` or ``test`` (else ``all``, split
by seed later, :mod:`cityseg.splits`). A split with no label at all (the test splits, Dark Zurich's train)
is left out. A photo without a label, or a label without a photo, in the rest is an error listing them,
or with ``skip_bad`` a warning listing them, and they are left out.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from cityseg.classes import ClassSet
from cityseg.errors import CitysegError
from cityseg.files import natural_key
from cityseg.images import IMAGE_SUFFIXES, image_size
from cityseg.label_formats import LABEL_FORMATS, read_label_file, sniff_format

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
LISTED = 5  # unmatched files named in an error; the rest are counted

# The one table of name suffixes, stripped from a file's stem before photos and labels are matched, and what a
# file with each one is: a photo, a label of one format, or another annotation (instance ids ...) to pass over.
NAME_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_leftImg8bit", "photo"),  # Cityscapes
    ("_rgb_anon", "photo"),  # ACDC, Dark Zurich
    ("_gtFine_labelIds", "labelids"),  # Cityscapes
    ("_gt_labelIds", "labelids"),  # ACDC, Dark Zurich
    ("_labelIds", "labelids"),  # cityseg synth, WildDash
    ("_gtFine_labelTrainIds", "trainids"),  # cityscapesScripts' createTrainIdLabelImgs
    ("_gt_labelTrainIds", "trainids"),
    ("_labelTrainIds", "trainids"),
    ("_train_id", "trainids"),  # BDD100K's older seg release
    ("_trainIds", "trainids"),
    ("_gtFine_color", "color"),
    ("_gt_labelColor", "color"),
    ("_color", "color"),
    ("_gtFine_instanceIds", "other"),
    ("_gt_invGray", "other"),
    ("_instanceIds", "other"),
)


@dataclass(frozen=True)
class Layout:
    """A known layout of photos and labels.

    Attributes:
        name: its name (``data`` notes, ``cityseg synth --layout``).
        title: the dataset(s) it is, for messages.
        photos: the photos' folder under the root.
        labels: (label format, folder under the root) of each kind of label it ships, its own format first.
        marker: when given, one of these folders lies directly in ``photos`` (tells ACDC from Dark Zurich).
        label_suffixes: the label-name suffix of each format (the photo's suffix replaced; ``""``: same name).
        split_folders: ``always`` (photos lie in train/val folders), ``never`` (one pool, split by seed) or
            ``optional`` (either).
    """

    name: str
    title: str
    photos: str
    labels: tuple[tuple[str, str], ...]
    marker: tuple[str, ...] = ()
    label_suffixes: tuple[tuple[str, str], ...] = ()
    split_folders: str = "always"

    @property
    def label_format(self) -> str:
        """The format of the labels the dataset ships (its first ``labels`` entry)."""
        return self.labels[0][0]

    def label_folder(self, label_format: str) -> str:
        """The labels' folder of ``label_format`` under the root."""
        folders = dict(self.labels)
        if label_format not in folders:
            ships = ", ".join(f"{fmt} ({folder})" for fmt, folder in self.labels)
            raise CitysegError(f"{self.title} has no {label_format} labels; it ships {ships}")
        return folders[label_format]

    def label_suffix(self, label_format: str) -> str:
        return dict(self.label_suffixes).get(label_format, "")


CONDITIONS = ("fog", "night", "rain", "snow")  # ACDC's weather conditions: the first folders of its photos
_GT_SUFFIXES = (("labelids", "_gt_labelIds"), ("trainids", "_gt_labelTrainIds"), ("color", "_gt_labelColor"))
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "kitti", "KITTI semantics", "training/image_2",
            (("labelids", "training/semantic"), ("color", "training/semantic_rgb")), split_folders="never",
        ),
        Layout(
            "bdd100k", "BDD100K semantic segmentation", "images/10k",
            (("trainids", "labels/sem_seg/masks"), ("color", "labels/sem_seg/colormaps")),
        ),
        Layout(
            "acdc", "ACDC", "rgb_anon", (("labelids", "gt"), ("trainids", "gt"), ("color", "gt")),
            marker=CONDITIONS, label_suffixes=_GT_SUFFIXES,
        ),
        Layout(
            "darkzurich", "Dark Zurich", "rgb_anon", (("labelids", "gt"), ("trainids", "gt"), ("color", "gt")),
            marker=SPLIT_FOLDERS, label_suffixes=_GT_SUFFIXES,
        ),
        Layout(
            "images", "images/ + labels/ (GTA5, WildDash, your own)", "images",
            (("labelids", "labels"), ("trainids", "labels"), ("color", "labels")), split_folders="optional",
        ),
    )
}  # fmt: skip


def find_layout(root: str | os.PathLike) -> Layout | None:
    """The known layout of photos and labels at ``root`` (first match in :data:`LAYOUTS`), or None.

    Example:
        >>> find_layout("data/kitti").name  # doctest: +SKIP
        'kitti'
    """
    root = Path(root)
    for layout in LAYOUTS.values():
        photos = root / layout.photos
        if not photos.is_dir() or not any((root / folder).is_dir() for _, folder in layout.labels):
            continue
        if layout.marker and not any((photos / name).is_dir() for name in layout.marker):
            continue
        return layout
    return None


def name_key(name: str) -> tuple[str, str | None]:
    """(stem with its :data:`NAME_SUFFIXES` suffix stripped, what the suffix says the file is, or None).

    Example:
        >>> name_key("aachen_000000_000019_gtFine_labelIds.png"), name_key("0a0b-1c2d.jpg")
        (('aachen_000000_000019', 'labelids'), ('0a0b-1c2d', None))
    """
    stem = name.rsplit(".", 1)[0]
    lower = stem.lower()
    for suffix, kind in sorted(NAME_SUFFIXES, key=lambda item: -len(item[0])):
        if lower.endswith(suffix.lower()) and len(stem) > len(suffix):
            return stem[: -len(suffix)], kind
    return stem, None


@dataclass
class LabelledFolder:
    """The photos of a labelled folder by split, each with its label file; what did not match.

    Attributes:
        root, layout, label_format: where, which layout, what its labels hold.
        splits: split (``train``, ``val``, ``test`` or ``all``) -> matched photos, in natural order.
        truths: each matched photo's label file (keys: resolved paths).
        unlabelled: photos of a labelled split without a label.
        orphans: labels without a photo.
        left_out: splits with no label at all -> their photo count (a test split, say).
    """

    root: Path
    layout: Layout
    label_format: str
    splits: dict[str, list[Path]] = field(default_factory=dict)
    truths: dict[Path, Path] = field(default_factory=dict)
    unlabelled: list[Path] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    def truth(self, photo: str | os.PathLike) -> Path:
        """The label file of ``photo``."""
        try:
            return self.truths[Path(photo).resolve()]
        except KeyError:
            raise CitysegError(
                f"{photo} has no label in {self.root / self.layout.label_folder(self.label_format)} "
                "(matched by name); add it (or pass --skip-bad)"
            ) from None

    def problems(self) -> str:
        """The unmatched files in one line ("" when every photo has its label and every label its photo)."""
        parts = []
        if self.unlabelled:
            parts.append(f"{_count(self.unlabelled, 'photo')} without a label ({_names(self.unlabelled)})")
        if self.orphans:
            parts.append(f"{_count(self.orphans, 'label')} without a photo ({_names(self.orphans)})")
        return " and ".join(parts)


def _count(paths: list[Path], noun: str) -> str:
    return f"{len(paths)} {noun}{'s' if len(paths) != 1 else ''}"


def _names(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:LISTED])
    return shown + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def _files(folder: Path) -> list[Path]:
    """Image files under ``folder`` at any depth, not hidden, in natural order of their relative paths."""
    try:
        found = [
            path
            for path in folder.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            and path.is_file()
        ]
    except OSError as exc:
        raise CitysegError(f"cannot list dataset folder {folder}: {exc.strerror or exc}; check the path") from None
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


def _split_of(folder: PurePosixPath) -> str:
    """The split a sub-folder belongs to: its first part named train, val or test, else ``all``."""
    return next((part for part in folder.parts if part in SPLIT_FOLDERS), "all")


def _keyed(files: list[Path], base: Path, kinds: tuple[str | None, ...], what: str) -> dict[tuple, Path]:
    """(sub-folder, stripped name) -> file, for the files whose suffix is of one of ``kinds``."""
    keyed: dict[tuple, Path] = {}
    for path in files:
        stem, kind = name_key(path.name)
        if kind not in kinds:
            continue
        key = (PurePosixPath(path.relative_to(base).parent.as_posix()), stem)
        if key in keyed:
            raise CitysegError(
                f"two {what} for one name: {keyed[key]} and {path}; remove one (names match once "
                "their suffixes are stripped)"
            )
        keyed[key] = path
    return keyed


def open_labelled(root: str | os.PathLike, label_format: str = "auto", skip_bad: bool = False) -> LabelledFolder:
    """Index the labelled folder at ``root``: photos by split, each matched to its label file.

    Args:
        root: the dataset's root (see the module docstring for the layouts).
        label_format: ``auto`` (the layout's own), ``labelids``, ``trainids`` or ``color``.
        skip_bad: leave photos without a label and labels without a photo out, with a warning listing them,
            instead of stopping.

    Raises:
        CitysegError: no known layout at ``root``, no label folder for the format, no photo with a label, or
            (without ``skip_bad``) unmatched files, named.
    """
    root = Path(root)
    layout = find_layout(root)
    if layout is None:
        raise CitysegError(f"{root} holds no known layout of photos and labels (images/ + labels/, KITTI, ...)")
    fmt = _auto_format(root, layout) if label_format in ("auto", "") else label_format
    if fmt not in LABEL_FORMATS:
        valid = ", ".join(LABEL_FORMATS)
        raise CitysegError(f"{root} is {layout.title}; data.label_format must be auto or one of {valid}, not {fmt!r}")
    photos_dir, labels_dir = root / layout.photos, root / layout.label_folder(fmt)
    if not labels_dir.is_dir():
        raise CitysegError(f"{root} is {layout.title} but has no {labels_dir} for its {fmt} labels; check the path")
    photos = _keyed(_files(photos_dir), photos_dir, ("photo", None), "photos")
    labels = _keyed(_files(labels_dir), labels_dir, (fmt, None), "labels")
    folder = LabelledFolder(root, layout, fmt)
    by_split: dict[str, list[tuple]] = {}
    for key in photos:
        by_split.setdefault(_split_of(key[0]), []).append(key)
    for split, keys in by_split.items():
        matched = [key for key in keys if key in labels]
        if not matched:
            folder.left_out[split] = len(keys)
            continue
        folder.splits[split] = [photos[key] for key in matched]
        folder.truths.update({photos[key].resolve(): labels[key] for key in matched})
        folder.unlabelled += [photos[key] for key in keys if key not in labels]
    folder.orphans = [path for key, path in labels.items() if key not in photos]
    if not folder.splits:
        raise CitysegError(
            f"no photo in {photos_dir} has a label in {labels_dir} ({len(photos)} photos, {len(labels)} {fmt} "
            "labels; matched by sub-folder and name, suffixes such as _leftImg8bit/_gtFine_labelIds stripped)"
        )
    _check_matched(folder, skip_bad)
    return folder


def _auto_format(root: Path, layout: Layout) -> str:
    """The layout's own format; for ``images/ + labels/``, ``color`` when its labels are RGB images."""
    if layout.name != "images":
        return layout.label_format
    first = next((p for p in _files(root / layout.label_folder("labelids")) if name_key(p.name)[1] is None), None)
    return sniff_format(first) if first is not None else layout.label_format


def _check_matched(folder: LabelledFolder, skip_bad: bool) -> None:
    problems = folder.problems()
    if not problems:
        return
    if not skip_bad:
        raise CitysegError(
            f"{folder.layout.title} at {folder.root}: {problems}; add or remove them, or pass --skip-bad to leave "
            "them out"
        )
    for path in folder.unlabelled:
        log.warning("skipped %s: no label", path)
    for path in folder.orphans:
        log.warning("skipped %s: no photo", path)
    log.warning("skipped %s", problems)


# ---- reading one photo and its labels -------------------------------------------------------------------

_OPENED: dict[tuple[str, str], LabelledFolder] = {}  # (resolved root, format) -> its index, once per process


@dataclass(frozen=True)
class LabelSource:
    """Where the labels of a labelled folder's photos come from: small, so it travels to worker processes.

    Example:
        >>> source = LabelSource("data/kitti")  # doctest: +SKIP
        >>> photo = "data/kitti/training/image_2/000000_10.png"
        >>> pixels, classes = source.read(photo, class_set("train19"))  # doctest: +SKIP
    """

    root: str
    label_format: str = "auto"

    def folder(self) -> LabelledFolder:
        """The folder's index, made once per process (unmatched files are left out here; discover reported them)."""
        key = (str(Path(self.root).resolve()), self.label_format)
        if key not in _OPENED:
            _OPENED[key] = open_labelled(self.root, self.label_format, skip_bad=True)
        return _OPENED[key]

    def read(
        self, photo_path: str | os.PathLike, classes: ClassSet, need_photo: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """``(photo, labels)``: (H, W, 3) uint8 RGB (None unless ``need_photo``) and (H, W) uint8 class indices.

        Raises:
            CitysegError: either file unreadable, a label value the format lacks, or sizes that differ.
        """
        from cityseg.images import decode_image

        folder = self.folder()
        truth = folder.truth(photo_path)
        labels = read_label_file(truth, folder.label_format, classes)
        photo = np.array(decode_image(photo_path).image) if need_photo else None  # writable: torch takes it
        size = photo.shape[:2] if photo is not None else image_size(photo_path)
        if tuple(size) != labels.shape:
            raise CitysegError(
                f"{truth} is {labels.shape[1]}x{labels.shape[0]} but its photo {photo_path} is {size[1]}x{size[0]}; "
                "a label image must be the size of its photo: replace one (or pass --skip-bad)"
            )
        return photo, labels


def label_source(root: str | os.PathLike, label_format: str = "auto") -> LabelSource | None:
    """The :class:`LabelSource` of ``root`` when it is a labelled folder (not pairs, not the release), else None.

    Each call starts from a fresh index of the folder (made at first use), so files added since an earlier
    run in the same process are seen; worker processes started after that use the same one.
    """
    if not root or label_format == "pairs" or find_layout(root) is None:
        return None
    _OPENED.pop((str(Path(root).resolve()), label_format), None)
    return LabelSource(str(root), label_format)
