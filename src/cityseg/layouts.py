"""Datasets of photos and label images: the street datasets that speak Cityscapes ids, and a user's own.

A *labelled folder* is a folder of photos and a folder of label images, matched by file name. The known
layouts (:data:`LAYOUTS`) are recognised by their folder names, as the pairs and the Cityscapes release are
(:func:`cityseg.pairs.discover` asks :func:`find_layout` first):

==================  ===========================================  =====================================  =========
layout              photos                                       labels                                 hold
==================  ===========================================  =====================================  =========
``kitti``           ``training/image_2/*.png``                   ``training/semantic/*.png``            label ids
``bdd100k``         ``images/10k/{train,val}/*.jpg``             ``labels/sem_seg/masks/{train,val}``   train ids
``acdc``            ``rgb_anon/{fog,night,rain,snow}/SPLIT/SEQ``  ``gt/...`` (``*_gt_labelIds.png``)     label ids
``darkzurich``      ``rgb_anon/{train,val}/night/SEQ``           ``gt/...`` (``*_gt_labelIds.png``)     label ids
``voc``             ``JPEGImages/`` (VOC, CVAT's "mask 1.1")     ``SegmentationClass/``; ImageSets      its list
``cvat-cityscapes`` ``imgsFine/leftImg8bit/SPLIT/CITY``          ``gtFine/SPLIT/CITY`` (``_labelIds``)  label ids
``roboflow``        ``{train,valid,test}/NAME.jpg``              ``NAME_mask.png`` beside it            its list
``coco-panoptic``   where the JSON's ``file_name`` lies          ``panoptic_*.json`` + its PNGs         its list
``coco``            where the JSON's ``file_name`` lies          ``instances_*.json``, ``stuff_*.json``  its list
``split-folders``   ``{train,val,valid,test}/images/``           ``.../labels`` (masks, annotations)    label ids
``images``          ``images/`` (GTA5, WildDash, your own)       ``labels/`` (masks, annotations, gt)   label ids
==================  ===========================================  =====================================  =========

An annotation tool's export brings its class list (:mod:`cityseg.class_lists`):
:func:`cityseg.labelled_folders.dataset_classes` says which, and ``labels.classes: auto`` (the default) takes
it; ``--classes`` still wins. COCO's annotations are rasterised (:mod:`cityseg.coco`).

(``images/`` + ``labels/`` holding RGB label images is read as colours, and so are a VOC export's RGB masks;
train ids are never guessed: say ``data.label_format=trainids``.)

A photo and a label match when they lie in the same sub-folder of their folders and their names agree once
the suffixes of :data:`NAME_SUFFIXES` (the one table of them) are stripped: ``X_leftImg8bit.png`` and
``X_gtFine_labelIds.png``, ``X_rgb_anon.png`` and ``X_gt_labelIds.png``, ``X.jpg`` and ``X.png``. Label
files with the suffix of another format (``X_color.png`` beside label ids) are not labels of this one.

Splits are the dataset's own: the first sub-folder named ``train``, ``val`` (or ``valid``, ``validation``) or
``test`` (else ``all``, split by seed later, :mod:`cityseg.splits`), or Pascal VOC's image lists. A split with
no label at all (the test splits, Dark Zurich's train) is left out. A photo without a label, or a label without
a photo, in the rest is an error listing them, or with ``skip_bad`` a warning listing them, and they are left out.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cityseg.errors import CitysegError

SPLIT_FOLDERS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}  # folder -> split
LABEL_FOLDERS = ("labels", "masks", "annotations", "gt")  # what the labels' folder beside images/ may be called

# The one table of name suffixes, stripped from a file's stem before photos and labels are matched, and what a
# file with each one is: a photo, a label of one format, a label of any format, or another annotation
# (instance ids ...) to pass over.
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
    ("_mask", "label"),  # Roboflow (beside its photo), and many tools' own
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
        photos: the photos' folder under the root (under each split folder with ``within_splits``).
        labels: (label format, folder under the root) of each kind of label it ships, its own format first.
        marker: when given, one of these folders lies directly in ``photos`` (tells ACDC from Dark Zurich).
        label_suffixes: the label-name suffix of each format (the photo's suffix replaced; ``""``: same name).
        split_folders: ``always`` (photos lie in train/val folders), ``never`` (one pool, split by seed or by
            ``image_sets``) or ``optional`` (either).
        within_splits: photos and labels lie in ``ROOT/<split>/`` (``train``, ``val`` or ``valid``, ``test``).
        label_folders: other names the labels' folder may have (the first found is taken).
        marker_files: when given, one of these files (glob patterns) lies in the root (or a split folder).
        classes_files: the export's class list (:mod:`cityseg.class_lists`), the first found in the root (or a
            split folder); ``voc21`` and the like name a built-in list.
        image_sets: the folder of split lists (VOC's ``train.txt`` ...); photos with no label are not named.
        labels_marked: a label is told from a photo by its suffix only (``_mask``: both in one folder).
        annotations: how labels are read: ``images`` (label images), ``coco`` (annotations rasterised).
    """

    name: str
    title: str
    photos: str
    labels: tuple[tuple[str, str], ...]
    marker: tuple[str, ...] = ()
    label_suffixes: tuple[tuple[str, str], ...] = ()
    split_folders: str = "always"
    within_splits: bool = False
    label_folders: tuple[str, ...] = ()
    marker_files: tuple[str, ...] = ()
    classes_files: tuple[str, ...] = ()
    image_sets: str = ""
    labels_marked: bool = False
    annotations: str = "images"

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

    def with_label_folder(self, folder: str) -> Layout:
        """This layout with its labels in ``folder`` (one of :attr:`label_folders`)."""
        return dataclasses.replace(self, labels=tuple((fmt, folder) for fmt, _ in self.labels))


CONDITIONS = ("fog", "night", "rain", "snow")  # ACDC's weather conditions: the first folders of its photos
_GT_SUFFIXES = (("labelids", "_gt_labelIds"), ("trainids", "_gt_labelTrainIds"), ("color", "_gt_labelColor"))
_ANY_FORMAT = (("labelids", "labels"), ("trainids", "labels"), ("color", "labels"))
COCO_FILES = ("instances_*.json", "stuff_*.json", "*.coco.json")  # COCO's, COCO-Stuff's, Roboflow's
PANOPTIC_FILES = ("panoptic_*.json",)
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
            "voc", "Pascal VOC segmentation", "JPEGImages",
            (("labelids", "SegmentationClass"), ("color", "SegmentationClass")), split_folders="never",
            classes_files=("labelmap.txt", "voc21"), image_sets="ImageSets/Segmentation",
        ),
        Layout(
            "cvat-cityscapes", "CVAT's Cityscapes 1.0 export", "imgsFine/leftImg8bit",
            (("labelids", "gtFine"), ("color", "gtFine")),
            label_suffixes=(("labelids", "_gtFine_labelIds"), ("color", "_gtFine_color")),
            classes_files=("label_colors.txt", "label_color.txt"),
        ),
        Layout(
            "roboflow", "Roboflow semantic segmentation", "", (("labelids", ""),),
            label_suffixes=(("labelids", "_mask"),), within_splits=True, marker_files=("_classes.csv",),
            classes_files=("_classes.csv",), labels_marked=True,
        ),
        Layout(
            "coco-panoptic", "COCO panoptic", "", (("labelids", ""),), split_folders="optional",
            marker_files=PANOPTIC_FILES, annotations="coco",
        ),
        Layout(
            "coco", "COCO", "", (("labelids", ""),), split_folders="optional", marker_files=COCO_FILES,
            annotations="coco",
        ),
        Layout(
            "split-folders", "split folders (train/images + train/labels)", "images", _ANY_FORMAT,
            within_splits=True, label_folders=LABEL_FOLDERS,
        ),
        Layout(
            "images", "images/ + labels/ (GTA5, WildDash, your own)", "images", _ANY_FORMAT,
            split_folders="optional", label_folders=LABEL_FOLDERS,
        ),
    )
}  # fmt: skip


def split_bases(root: Path, layout: Layout) -> list[tuple[Path, str | None]]:
    """(folder, split) where ``layout``'s photos and labels lie: each split folder's, or the root (split None)."""
    if not layout.within_splits:
        return [(root, None)]
    try:
        names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and entry.name.lower() in SPLIT_NAMES)
    except OSError:
        return []
    return [(root / name, SPLIT_NAMES[name.lower()]) for name in names]


def find_layout(root: str | os.PathLike) -> Layout | None:
    """The known layout of photos and labels at ``root`` (first match in :data:`LAYOUTS`), or None.

    A layout whose labels' folder may have other names (:attr:`Layout.label_folders`) comes back with the
    one found.

    Example:
        >>> find_layout("data/kitti").name  # doctest: +SKIP
        'kitti'
    """
    root = Path(root)
    for layout in LAYOUTS.values():
        for base, _ in split_bases(root, layout):
            found = _found_in(base, layout)
            if found is not None:
                return found
    return None


def _found_in(base: Path, layout: Layout) -> Layout | None:
    photos = base / layout.photos
    if not photos.is_dir():
        return None
    if layout.marker and not any((photos / name).is_dir() for name in layout.marker):
        return None
    if layout.marker_files and not _any_file(base, layout.marker_files, layout.annotations == "coco"):
        return None
    if layout.label_folders:
        folder = next((name for name in layout.label_folders if (base / name).is_dir()), None)
        return None if folder is None else layout.with_label_folder(folder)
    return layout if any((base / folder).is_dir() for _, folder in layout.labels) else None


def _any_file(base: Path, patterns: tuple[str, ...], deep: bool) -> bool:
    """One of ``patterns`` in ``base`` (COCO's also one level down: ``annotations/``, Roboflow's splits)."""
    for pattern in patterns:
        if any(path.is_file() for path in base.glob(pattern)):
            return True
        if deep and any(path.is_file() for path in base.glob(f"*/{pattern}")):
            return True
    return False


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


def split_of(folder: PurePosixPath) -> str:
    """The split a sub-folder belongs to: its first part named train, val (valid) or test, else ``all``."""
    return next((SPLIT_NAMES[part.lower()] for part in folder.parts if part.lower() in SPLIT_NAMES), "all")
