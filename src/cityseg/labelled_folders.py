"""A labelled folder indexed: each photo of each split matched to its label, and read with it.

The layouts and how names match are :mod:`cityseg.layouts`; this module walks a folder of one of them
(:func:`open_labelled`), and reads a photo with its labels for the labelling stage (:class:`LabelSource`).
A label is a label image (most layouts) or an annotation rasterised on demand (COCO, :mod:`cityseg.coco`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cityseg.class_lists import is_cityscapes_list, read_class_list
from cityseg.classes import AUTO, DEFAULT_SET, ClassSet
from cityseg.coco import coco_files, index_coco
from cityseg.errors import CitysegError
from cityseg.files import natural_key
from cityseg.images import IMAGE_SUFFIXES, image_size
from cityseg.label_formats import LABEL_FORMATS, read_label_file, sniff_format
from cityseg.layouts import Layout, find_layout, name_key, split_bases, split_of

log = logging.getLogger(__name__)

LISTED = 5  # unmatched files named in an error; the rest are counted
IMAGE_SET_SPLITS = {"train.txt": "train", "val.txt": "val", "test.txt": "test"}  # VOC's lists; trainval.txt alone
TRAINVAL = "trainval.txt"


@dataclass
class LabelledFolder:
    """The photos of a labelled folder by split, each with its label; what did not match.

    Attributes:
        root, layout, label_format: where, which layout, what its labels hold.
        splits: split (``train``, ``val``, ``test`` or ``all``) -> matched photos, in natural order.
        truths: each matched photo's label: a label file, or an annotation that reads itself (``read(classes)``,
            COCO's); keys: resolved paths.
        unlabelled: photos of a labelled split without a label.
        orphans: labels without a photo.
        left_out: splits with no label at all -> their photo count (a test split, say).
    """

    root: Path
    layout: Layout
    label_format: str
    splits: dict[str, list[Path]] = field(default_factory=dict)
    truths: dict[Path, Any] = field(default_factory=dict)
    unlabelled: list[Path] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    def truth(self, photo: str | os.PathLike) -> Any:
        """The label of ``photo``: its label file, or the annotation that rasterises it."""
        try:
            return self.truths[Path(photo).resolve()]
        except KeyError:
            raise CitysegError(
                f"{photo} has no label in {self.root / self.layout.label_folder(self.label_format)} "
                "(matched by name); add it (or pass --skip-bad)"
            ) from None

    def add(self, split: str, matched: list[tuple[Path, Any]], unlabelled: list[Path]) -> None:
        """One split's photos with their labels, and those without one (a split with none at all is left out)."""
        if not matched:
            self.left_out[split] = self.left_out.get(split, 0) + len(unlabelled)
            return
        self.splits.setdefault(split, []).extend(photo for photo, _ in matched)
        self.truths.update({photo.resolve(): truth for photo, truth in matched})
        self.unlabelled += unlabelled

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


def image_files(folder: Path) -> list[Path]:
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
    """Index the labelled folder at ``root``: photos by split, each matched to its label.

    Args:
        root: the dataset's root (see :mod:`cityseg.layouts` for the layouts).
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
    if layout.annotations == "coco":
        if label_format not in ("auto", "", "labelids"):
            raise CitysegError(
                f"{root} is {layout.title}: its annotations are rasterised to category ids; drop "
                f"data.label_format={label_format} (auto reads them)"
            )
        folder = LabelledFolder(root, layout, "labelids")
        for split, matched in index_coco(root, layout, skip_bad):
            folder.add(split, matched, [])
    else:
        fmt = _auto_format(root, layout) if label_format in ("auto", "") else label_format
        if fmt not in LABEL_FORMATS:
            valid = ", ".join(LABEL_FORMATS)
            raise CitysegError(
                f"{root} is {layout.title}; data.label_format must be auto or one of {valid}, not {fmt!r}"
            )
        folder = LabelledFolder(root, layout, fmt)
        for base, split in split_bases(root, layout):
            _index(folder, base, split, skip_bad)
    if not folder.splits:
        raise CitysegError(
            f"no photo in {root} has a label ({layout.title}, {folder.label_format} labels; matched by sub-folder "
            "and name, suffixes such as _leftImg8bit/_gtFine_labelIds/_mask stripped)"
        )
    _check_matched(folder, skip_bad)
    return folder


def _index(folder: LabelledFolder, base: Path, split: str | None, skip_bad: bool) -> None:
    """Match the photos and labels of one folder (the root, or one split folder) into ``folder``."""
    layout, fmt = folder.layout, folder.label_format
    photos_dir, labels_dir = base / layout.photos, base / layout.label_folder(fmt)
    if not labels_dir.is_dir():  # each split folder may name its labels' folder its own way
        labels_dir = next((base / name for name in layout.label_folders if (base / name).is_dir()), labels_dir)
    if not labels_dir.is_dir():
        if split is not None:  # a split folder without labels (a test split)
            folder.left_out[split] = len(image_files(photos_dir))
            return
        raise CitysegError(f"{base} is {layout.title} but has no {labels_dir} for its {fmt} labels; check the path")
    photos = _keyed(image_files(photos_dir), photos_dir, ("photo", None), "photos")
    kinds = (fmt, "label") if layout.labels_marked else (fmt, "label", None)
    labels = _keyed(image_files(labels_dir), labels_dir, kinds, "labels")
    if layout.image_sets:
        by_split = _listed_splits(base / layout.image_sets, photos, labels, photos_dir, skip_bad)
    else:
        by_split = {}
        for key in photos:
            by_split.setdefault(split or split_of(key[0]), []).append(key)
    for name, keys in by_split.items():
        matched = [(photos[key], labels[key]) for key in keys if key in labels]
        folder.add(name, matched, [photos[key] for key in keys if key not in labels])
    listed = {key for keys in by_split.values() for key in keys}
    folder.orphans += [path for key, path in labels.items() if key not in photos or key not in listed]


def _listed_splits(
    lists: Path, photos: dict[tuple, Path], labels: dict[tuple, Path], photos_dir: Path, skip_bad: bool
) -> dict[str, list[tuple]]:
    """VOC's splits: the names its image lists give (``train.txt``, ``val.txt`` ...); without lists, every
    photo that has a label (VOC's other photos are for detection only)."""
    files = {name: lists / name for name in IMAGE_SET_SPLITS if (lists / name).is_file()}
    if not files and (lists / TRAINVAL).is_file():
        files = {TRAINVAL: lists / TRAINVAL}
    if not files:
        return {"all": [key for key in photos if key in labels]}
    by_stem = {key[1]: key for key in photos}
    by_split: dict[str, list[tuple]] = {}
    for name, path in files.items():
        keys = by_split.setdefault(IMAGE_SET_SPLITS.get(name, "train"), [])
        for number, stem in _list_lines(path):
            if stem in by_stem:
                keys.append(by_stem[stem])
                continue
            message = f"{path} line {number} names {stem!r}, but {photos_dir} has no photo of that name"
            if not skip_bad:
                raise CitysegError(f"{message}; add it or remove the line (or pass --skip-bad)")
            log.warning("skipped %s", message)
    return by_split


def _list_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CitysegError(f"cannot read image list {path}: {exc.strerror or exc}; check the export") from None
    return [(number, line.split()[0]) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _auto_format(root: Path, layout: Layout) -> str:
    """The layout's own format; ``color`` where its labels are RGB images (your own, a VOC export's)."""
    if not any(fmt == "color" and folder == layout.label_folder(layout.label_format) for fmt, folder in layout.labels):
        return layout.label_format
    for base, _ in split_bases(root, layout):
        labels = base / layout.label_folder(layout.label_format)
        first = next((p for p in image_files(labels) if name_key(p.name)[1] in (None, "label")), None)
        if first is not None:
            return sniff_format(first)
    return layout.label_format


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


def read_truth(truth: Any, label_format: str, classes: ClassSet) -> np.ndarray:
    """(H, W) uint8 class indices of a photo's label: a label file, or an annotation that reads itself."""
    if isinstance(truth, Path):
        return read_label_file(truth, label_format, classes)
    return truth.read(classes)


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
        labels = read_truth(truth, folder.label_format, classes)
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


def dataset_classes(root: str | os.PathLike, layout: Layout | None = None) -> str:
    """The classes of the dataset at ``root`` as ``labels.classes`` names them: an export's class list (its
    file), a built-in one (``voc21``, ``train19`` for a Cityscapes list), or ``train19`` where it has none.

    Example:
        >>> dataset_classes("mine-voc")  # doctest: +SKIP
        'mine-voc/labelmap.txt'
    """
    root = Path(root)
    layout = layout or find_layout(root)
    if layout is None:
        return "train19"
    if layout.annotations == "coco":
        files = coco_files(root, layout)
        return str(files[0]) if files else "train19"
    for name in layout.classes_files:
        for base in [root, *(base for base, split in split_bases(root, layout) if split)]:
            if (base / name).is_file():
                path = base / name
                return "train19" if is_cityscapes_list(read_class_list(path)) else str(path)
        if "." not in name:  # a built-in list: the export has no file of its own
            return name
    return "train19"


def adopt_dataset_classes(config) -> str:
    """Resolve ``labels.classes: auto`` to the dataset's own classes (:func:`cityseg.layouts.dataset_classes`),
    in place, so the run's config records them; the line saying what the dataset was recognised as ("" for
    pair images and the release)."""
    data, labels = config.data, config.labels
    layout = find_layout(data.root) if data.root and data.label_format != "pairs" else None
    if labels.classes in (AUTO, ""):
        labels.classes = dataset_classes(data.root, layout) if layout is not None else DEFAULT_SET
        chosen = "its own class list" if labels.classes not in (DEFAULT_SET,) else "the default"
    else:
        chosen = "labels.classes"
    if layout is None:
        return ""
    return f"{data.root} is {layout.title}; classes: {labels.classes} ({chosen})"
