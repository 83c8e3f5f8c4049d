"""What a model predicts: a :class:`ClassSet`, and the built-in sets made from the Cityscapes table.

A class set is an ordered list of class names and colours, the label id written for each class, and what
every value of a label image means to it (:class:`LabelValues`): each value of a label-id image, of a
train-id image and each colour of a colour label image, mapped to a class index, ``IGNORE_INDEX``, or "no
such value". Every set is made of these parts and read the same way, whatever it came from: the built-in
sets (``train19``, ``categories``, ``labelids``) and the fitted ``kmeans`` set read Cityscapes label images,
so their values come from the Cityscapes table (:func:`cityscapes_values`); a user's class table brings its
own (:mod:`cityseg.user_classes`).

:func:`cityseg.classes.class_set` builds any of them, by name or from a table's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cityseg.cityscapes import (
    CATEGORIES,
    CATEGORY_COLORS,
    IGNORE_INDEX,
    LABEL_BY_ID,
    LABELS,
    NUM_LABEL_IDS,
    TRAIN_ID_LABEL_IDS,
    color_to_label_id,
)

NO_SUCH_VALUE = -1  # in a LabelValues lookup: a value this kind of label image never holds


@dataclass(frozen=True)
class LabelValues:
    """What each value of a label image means to a class set: a class index, ``IGNORE_INDEX`` or ``NO_SUCH_VALUE``.

    Attributes:
        ids: (256,) int16, each value of a label-id image.
        train_ids: (256,) int16, each value of a train-id image.
        colors: each colour of a colour label image -> class index or ``IGNORE_INDEX`` (other colours: none).
        ignore_id: the label id that stands for unlabelled pixels, written for ignored pixels.
    """

    ids: np.ndarray
    train_ids: np.ndarray
    colors: dict[tuple[int, int, int], int]
    ignore_id: int


def cityscapes_values(id_to_class: np.ndarray) -> LabelValues:
    """The values of Cityscapes label images, in the classes that ``id_to_class`` maps the official label ids to.

    Label ids 0-33 map through ``id_to_class``; train ids 0-18 through the label id of each (255 is ignored);
    each official colour through the label id it stands for (:func:`~cityseg.cityscapes.color_to_label_id`);
    unlabelled pixels are ``unlabeled`` (0).

    Args:
        id_to_class: (NUM_LABEL_IDS,) official label id -> class index or ``IGNORE_INDEX``.
    """
    ids = np.full(256, NO_SUCH_VALUE, dtype=np.int16)
    ids[: len(id_to_class)] = id_to_class
    train_ids = np.full(256, NO_SUCH_VALUE, dtype=np.int16)
    train_ids[: len(TRAIN_ID_LABEL_IDS)] = ids[list(TRAIN_ID_LABEL_IDS)]
    train_ids[IGNORE_INDEX] = IGNORE_INDEX
    colors = {color: int(ids[label_id]) for color, label_id in color_to_label_id().items()}
    return LabelValues(ids, train_ids, colors, ignore_id=0)


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts, and how the values of label images map onto them.

    Args:
        name: registry name (``train19``, ``categories``, ``labelids``, ``kmeans``), or a user table's name.
        names: class names, index ``i`` is class ``i``.
        colors: RGB colour of each class, for drawing.
        id_to_class: label id -> class index or ``IGNORE_INDEX``: length 34 for the sets of official label ids,
            256 for a user's table (its own ids, :mod:`cityseg.user_classes`).
        class_to_id: label id written for each class (``--ids labelids`` in prediction).
        table: the user's class table this set was read from (JSON-ready, see
            :func:`cityseg.user_classes.read_class_table`); None for the built-in sets.
        label_values: what each value of a label image means to this set; when not given, the set reads Cityscapes
            label images through ``id_to_class`` (:func:`cityscapes_values`), as the built-in sets do.

    Example:
        >>> from cityseg.classes import class_set
        >>> cs = class_set("train19")
        >>> cs.num_classes, cs.names[0]
        (19, 'road')
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    id_to_class: np.ndarray
    class_to_id: tuple[int, ...]
    table: dict | None = None
    label_values: LabelValues | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.label_values is None:  # official label ids alone (a built-in, fitted or saved set): Cityscapes images
            object.__setattr__(self, "label_values", cityscapes_values(self.id_to_class))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def ignore_id(self) -> int:
        """The label id of unlabelled pixels: 0 (``unlabeled``) for the built-in sets, a table's (first) ``ignore``."""
        return self.label_values.ignore_id

    def spec(self) -> str | dict:
        """What :func:`~cityseg.classes.class_set` rebuilds this set from: the user's table itself, or the name."""
        return self.table or self.name

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colour table indexed by class index; ignored pixels are black."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return table

    def colorize(self, classes: np.ndarray) -> np.ndarray:
        """(H, W) class indices -> (H, W, 3) uint8 RGB in the class colours."""
        return self.palette()[classes]

    def to_label_ids(self, classes: np.ndarray) -> np.ndarray:
        """(H, W) class indices -> label ids (ignored pixels become :attr:`ignore_id`, ``unlabeled`` for Cityscapes)."""
        table = np.full(256, self.ignore_id, dtype=np.uint8)
        table[: self.num_classes] = self.class_to_id
        return table[classes]

    def from_label_ids(self, label_ids: np.ndarray) -> np.ndarray:
        """(H, W) label ids -> class indices of this set (unknown ids are ignored)."""
        table = self.id_lookup()
        return np.where(table < 0, IGNORE_INDEX, table).astype(np.uint8)[label_ids]

    def id_lookup(self) -> np.ndarray:
        """(256,) int16: each value of a label-id image -> class index, ``IGNORE_INDEX``, or -1 for no such id."""
        return self.label_values.ids.copy()

    def train_id_lookup(self) -> np.ndarray:
        """(256,) int16: each value of a train-id image -> class index, ``IGNORE_INDEX``, or -1 for no such value.

        Train ids are the 19 Cityscapes training classes (255 ignored), mapped through their label ids onto
        this set; for a user's table they are its class indices 0..N-1, with 255 and its ignore values ignored.
        """
        return self.label_values.train_ids.copy()

    def color_lookup(self) -> dict[tuple[int, int, int], int]:
        """Each colour of a colour label image -> class index or ``IGNORE_INDEX`` (official colours, or a table's)."""
        return dict(self.label_values.colors)


def _train19() -> ClassSet:
    trained = sorted((lab for lab in LABELS if 0 <= lab.train_id < IGNORE_INDEX), key=lambda lab: lab.train_id)
    table = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0 and 0 <= label.train_id < IGNORE_INDEX:
            table[label.id] = label.train_id
    return ClassSet(
        name="train19",
        names=tuple(lab.name for lab in trained),
        colors=tuple(lab.color for lab in trained),
        id_to_class=table,
        class_to_id=tuple(lab.id for lab in trained),
    )


def _categories() -> ClassSet:
    kept = CATEGORIES[1:]  # void is ignored, as in the official category evaluation
    table = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0 and label.category_id > 0:
            table[label.id] = label.category_id - 1
    # a representative label id for each category, so predictions can be written as label ids
    representative = {"flat": 7, "construction": 11, "object": 17, "nature": 21, "sky": 23, "human": 24, "vehicle": 26}
    return ClassSet(
        name="categories",
        names=kept,
        colors=tuple(CATEGORY_COLORS[c] for c in kept),
        id_to_class=table,
        class_to_id=tuple(representative[c] for c in kept),
    )


def _labelids() -> ClassSet:
    ordered = [LABEL_BY_ID[i] for i in range(NUM_LABEL_IDS)]
    return ClassSet(
        name="labelids",
        names=tuple(lab.name for lab in ordered),
        colors=tuple(lab.color for lab in ordered),
        id_to_class=np.arange(NUM_LABEL_IDS, dtype=np.uint8),
        class_to_id=tuple(range(NUM_LABEL_IDS)),
    )


CLASS_SETS = {"train19": _train19, "categories": _categories, "labelids": _labelids}  # the built-in sets, by name
