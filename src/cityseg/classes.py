"""Class sets by name or by file: :func:`class_set`, the one way in, and every name of the class modules.

Three modules below this one hold the classes, each one job:

- :mod:`cityseg.cityscapes`: the official Cityscapes class table (label ids, names, train ids, categories,
  colours, ``IGNORE_INDEX``);
- :mod:`cityseg.class_sets`: :class:`ClassSet`, what a model predicts, and the built-in sets made from that
  table (``train19``, ``categories``, ``labelids``);
- :mod:`cityseg.user_classes`: a user's class table file (YAML or JSON), read, checked and made a ClassSet;
- :mod:`cityseg.class_lists`: the class lists annotation tools export (``labelmap.txt``, ``_classes.csv``,
  COCO categories ...), read as class tables, and Pascal VOC's own 21 classes (``voc21``).

``auto`` (``labels.classes``' default) is the dataset's own classes, resolved when the dataset is opened
(:func:`cityseg.labelled_folders.dataset_classes`: an export's class list, else ``train19``); anywhere else it is
``train19``.

Callers import from here (``from cityseg.classes import IGNORE_INDEX, class_set``); the modules below
never import this one.
"""

from __future__ import annotations

from cityseg.cityscapes import (
    CATEGORIES,
    CATEGORY_COLORS,
    IGNORE_INDEX,
    LABEL_BY_ID,
    LABEL_BY_NAME,
    LABELS,
    NUM_LABEL_IDS,
    TRAIN_ID_LABEL_IDS,
    Label,
    color_to_label_id,
)
from cityseg.class_lists import VOC_CLASSES, is_class_list
from cityseg.class_sets import CLASS_SETS, NO_SUCH_VALUE, ClassSet, LabelValues, cityscapes_values
from cityseg.user_classes import read_class_table

AUTO = "auto"  # labels.classes: the dataset's own classes
DEFAULT_SET = "train19"
EXPORT_SETS = {"voc21": VOC_CLASSES}  # the classes an export without a class list has, by name

__all__ = [
    "AUTO",
    "CATEGORIES",
    "CATEGORY_COLORS",
    "CLASS_SETS",
    "DEFAULT_SET",
    "IGNORE_INDEX",
    "LABELS",
    "LABEL_BY_ID",
    "LABEL_BY_NAME",
    "NO_SUCH_VALUE",
    "NUM_LABEL_IDS",
    "TRAIN_ID_LABEL_IDS",
    "ClassSet",
    "Label",
    "LabelValues",
    "cityscapes_values",
    "class_set",
    "color_to_label_id",
    "is_table_path",
]


def class_set(spec: str | dict) -> ClassSet:
    """Build a class set: a built-in one by name, or a user's class table (a YAML file's path, or its dict).

    The ``kmeans`` set depends on a fitted model: see ``labels.KMeansLabeller``. A table is read and checked
    by :func:`cityseg.user_classes.read_class_table` (a bad one is a one-line ``CitysegError`` naming the file).

    Example:
        >>> class_set("categories").num_classes
        7
    """
    if isinstance(spec, dict) or is_table_path(spec):
        return read_class_table(spec)
    if spec in EXPORT_SETS:
        return read_class_table(EXPORT_SETS[spec])
    if spec == AUTO:
        return CLASS_SETS[DEFAULT_SET]()
    try:
        return CLASS_SETS[spec]()
    except KeyError:
        valid = ", ".join([AUTO, *CLASS_SETS, *EXPORT_SETS, "kmeans"])
        raise ValueError(
            f"unknown class set {spec!r}; choose one of: {valid}, or a class table (.yaml) or an export's class "
            "list (labelmap.txt ...)"
        ) from None


def is_table_path(spec: str) -> bool:
    """True when ``spec`` names a class-table file rather than a built-in set (``.yaml``/``.yml``/``.json``).

    Example:
        >>> is_table_path("my_classes.yaml"), is_table_path("train19")
        (True, False)
    """
    return str(spec).lower().endswith((".yaml", ".yml", ".json")) or is_class_list(spec)
