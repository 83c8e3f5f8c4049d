"""The Cityscapes class table: the single source of label ids, names, train ids, categories and colours.

Values follow the official Cityscapes specification (``cityscapesScripts/helpers/labels.py``).
Every other module asks this one for names, colours and id mappings; nothing else spells them out.

A :class:`ClassSet` is what a model is trained on: an ordered list of class names and colours, and a
lookup table that maps each of the 34 official label ids to a class index (or :data:`IGNORE_INDEX`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255  # label value excluded from loss and metrics, as in the official train ids


class Label(NamedTuple):
    name: str
    id: int  # official label id (0..33; -1 for the license plate)
    train_id: int  # 0..18, or IGNORE_INDEX
    category: str
    category_id: int  # 0 = void .. 7 = vehicle
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
LABELS: tuple[Label, ...] = (
    #      name                    id  trainId category        catId inst  ignore colour
    Label("unlabeled",              0, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("ego vehicle",            1, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("rectification border",   2, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("out of roi",             3, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("static",                 4, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("dynamic",                5, 255, "void",         0, False, True,  (111, 74, 0)),
    Label("ground",                 6, 255, "void",         0, False, True,  (81, 0, 81)),
    Label("road",                   7,   0, "flat",         1, False, False, (128, 64, 128)),
    Label("sidewalk",               8,   1, "flat",         1, False, False, (244, 35, 232)),
    Label("parking",                9, 255, "flat",         1, False, True,  (250, 170, 160)),
    Label("rail track",            10, 255, "flat",         1, False, True,  (230, 150, 140)),
    Label("building",              11,   2, "construction", 2, False, False, (70, 70, 70)),
    Label("wall",                  12,   3, "construction", 2, False, False, (102, 102, 156)),
    Label("fence",                 13,   4, "construction", 2, False, False, (190, 153, 153)),
    Label("guard rail",            14, 255, "construction", 2, False, True,  (180, 165, 180)),
    Label("bridge",                15, 255, "construction", 2, False, True,  (150, 100, 100)),
    Label("tunnel",                16, 255, "construction", 2, False, True,  (150, 120, 90)),
    Label("pole",                  17,   5, "object",       3, False, False, (153, 153, 153)),
    Label("polegroup",             18, 255, "object",       3, False, True,  (153, 153, 153)),
    Label("traffic light",         19,   6, "object",       3, False, False, (250, 170, 30)),
    Label("traffic sign",          20,   7, "object",       3, False, False, (220, 220, 0)),
    Label("vegetation",            21,   8, "nature",       4, False, False, (107, 142, 35)),
    Label("terrain",               22,   9, "nature",       4, False, False, (152, 251, 152)),
    Label("sky",                   23,  10, "sky",          5, False, False, (70, 130, 180)),
    Label("person",                24,  11, "human",        6, True,  False, (220, 20, 60)),
    Label("rider",                 25,  12, "human",        6, True,  False, (255, 0, 0)),
    Label("car",                   26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    Label("truck",                 27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    Label("bus",                   28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    Label("caravan",               29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    Label("trailer",               30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    Label("train",                 31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    Label("motorcycle",            32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    Label("bicycle",               33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    Label("license plate",         -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
)
# fmt: on

NUM_LABEL_IDS = 34  # official label ids 0..33 (the license plate, -1, is not drawn in the masks)
CATEGORIES = ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")
CATEGORY_COLORS = {  # the colours cityscapesScripts uses for category images
    "void": (0, 0, 0),
    "flat": (128, 64, 128),
    "construction": (70, 70, 70),
    "object": (153, 153, 153),
    "nature": (107, 142, 35),
    "sky": (70, 130, 180),
    "human": (220, 20, 60),
    "vehicle": (0, 0, 142),
}

LABEL_BY_ID = {label.id: label for label in LABELS if label.id >= 0}
LABEL_BY_NAME = {label.name: label for label in LABELS}


def color_to_label_id() -> dict[tuple[int, int, int], int]:
    """Each distinct official colour and the label id it stands for in a colour mask.

    Several ids share a colour in the specification; a colour mask cannot tell them apart, so the
    colour takes the id a user would expect: black is ``unlabeled`` (0; ids 1-4 are void too),
    grey (153,153,153) is ``pole`` (17; ``polegroup`` is rare and ignored in training) and
    (0,0,142) is ``car`` (26; the license plate is part of a car).
    """
    mapping: dict[tuple[int, int, int], int] = {}
    for label in LABELS:
        if label.id >= 0 and label.color not in mapping:  # first id in table order wins
            mapping[label.color] = label.id
    return mapping


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts, and how the values of label images map onto them.

    Args:
        name: registry name (``train19``, ``categories``, ``labelids``, ``kmeans``), or a user table's name.
        names: class names, index ``i`` is class ``i``.
        colors: RGB colour of each class, for drawing.
        id_to_class: label id -> class index or ``IGNORE_INDEX``: length 34 for the built-in sets (the
            official label ids), 256 for a user's table (its own ids, :mod:`cityseg.class_tables`).
        class_to_id: label id written for each class (``--ids labelids`` in prediction).
        table: the user's class table this set was read from (JSON-ready, see
            :func:`cityseg.class_tables.read_class_table`); None for the built-in sets.

    Example:
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

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def ignore_id(self) -> int:
        """The label id of unlabelled pixels: 0 (``unlabeled``) for the built-in sets, a table's (first) ``ignore``."""
        return int(self.table["ignore"][0]) if self.table else 0

    def spec(self) -> str | dict:
        """What :func:`class_set` rebuilds this set from: the built-in set's name, or the user's table itself."""
        return self.table if self.table else self.name

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
        table = np.full(256, -1, dtype=np.int16)
        if self.table:
            for index, entry in enumerate(self.table["classes"]):
                table[entry["ids"]] = index
            table[self.table["ignore"]] = IGNORE_INDEX
        else:
            table[: len(self.id_to_class)] = self.id_to_class
        return table

    def train_id_lookup(self) -> np.ndarray:
        """(256,) int16: each value of a train-id image -> class index, ``IGNORE_INDEX``, or -1 for no such value.

        Train ids are the 19 Cityscapes training classes (255 ignored), mapped through their label ids onto
        this set; for a user's table they are its class indices 0..N-1, with 255 and its ignore values ignored.
        """
        table = np.full(256, -1, dtype=np.int16)
        if self.table:
            table[self.table["ignore"]] = IGNORE_INDEX
            table[IGNORE_INDEX] = IGNORE_INDEX
            table[: self.num_classes] = np.arange(self.num_classes)  # an index wins over an ignore value
            return table
        ids = self.id_lookup()
        table[: len(_TRAIN_ID_LABEL_IDS)] = ids[list(_TRAIN_ID_LABEL_IDS)]
        table[IGNORE_INDEX] = IGNORE_INDEX
        return table

    def color_lookup(self) -> dict[tuple[int, int, int], int]:
        """Each colour of a colour label image -> class index or ``IGNORE_INDEX`` (official colours, or a table's)."""
        if self.table:
            found = {tuple(e["color"]): i for i, e in enumerate(self.table["classes"]) if e.get("color")}
            return {**found, **{tuple(color): IGNORE_INDEX for color in self.table.get("ignore_color") or []}}
        ids = self.id_lookup()
        return {color: int(ids[label_id]) for color, label_id in color_to_label_id().items()}


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


CLASS_SETS = {"train19": _train19, "categories": _categories, "labelids": _labelids}
# the label id of each Cityscapes train id 0..18, in train-id order (a train-id image's values -> label ids)
_TRAIN_ID_LABEL_IDS = tuple(
    lab.id for lab in sorted(LABELS, key=lambda lab: lab.train_id) if 0 <= lab.train_id < IGNORE_INDEX
)


def class_set(spec: str | dict) -> ClassSet:
    """Build a class set: a built-in one by name, or a user's class table (a YAML file's path, or its dict).

    The ``kmeans`` set depends on a fitted model: see ``labels.KMeansLabeller``. A table is read and checked
    by :func:`cityseg.class_tables.read_class_table` (a bad one is a one-line ``CitysegError`` naming the file).

    Example:
        >>> class_set("categories").num_classes
        7
    """
    if isinstance(spec, dict) or is_table_path(spec):
        from cityseg.class_tables import read_class_table

        return read_class_table(spec)
    try:
        return CLASS_SETS[spec]()
    except KeyError:
        valid = ", ".join([*CLASS_SETS, "kmeans"])
        raise ValueError(f"unknown class set {spec!r}; choose one of: {valid}, or a class table (.yaml)") from None


def is_table_path(spec: str) -> bool:
    """True when ``spec`` names a class-table file rather than a built-in set (``.yaml``/``.yml``/``.json``).

    Example:
        >>> is_table_path("my_classes.yaml"), is_table_path("train19")
        (True, False)
    """
    return str(spec).lower().endswith((".yaml", ".yml", ".json"))
