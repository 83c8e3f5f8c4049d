"""The class lists annotation tools export beside their masks, read as class tables.

Each is turned into the table a user would have written (:mod:`cityseg.user_classes` checks and builds it):
the classes in the file's order, each with the value its masks hold and its colour where the file gives one.

================================  =======================================  ====================================
file                              written by                               a class's value in the masks
================================  =======================================  ====================================
``labelmap.txt``                  CVAT / Datumaro "Segmentation mask 1.1"  its line (0 = first: ``background``)
                                  (Pascal VOC)                             or its colour (RGB masks)
``label_colors.txt``              CVAT / Datumaro "Cityscapes 1.0"         its line (the label id)
``_classes.csv``                  Roboflow "Semantic Segmentation Masks"   its ``Pixel Value``
COCO ``*.json`` (``categories``)  COCO, COCO-Stuff, COCO panoptic, CVAT,   its category ``id`` (0: pixels no
                                  Roboflow "COCO"                          annotation covers, ``background``)
================================  =======================================  ====================================

A Pascal VOC folder without ``labelmap.txt`` has VOC's own 21 classes (:data:`VOC_CLASSES`, the built-in set
``voc21``). A ``label_colors.txt`` that is the Cityscapes table itself reads as Cityscapes label ids
(:func:`is_cityscapes_list`): such an export trains the 19 classes (``train19``) like the official release.
In every table 255 is ignored (VOC's border), and so is VOC's border colour where no class has it.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from cityseg.cityscapes import LABEL_BY_ID, NUM_LABEL_IDS
from cityseg.errors import CitysegError

IGNORE_VALUE = 255  # VOC's border, the value no class list gives a class
VOC_BORDER_COLOR = (224, 224, 192)
BACKGROUND = "background"
VOC_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_color(index: int) -> tuple[int, int, int]:
    """The colour Pascal VOC's palette gives class ``index`` (the bits of the index spread over R, G and B)."""
    rgb = [0, 0, 0]
    for shift in range(8):
        for channel in range(3):
            rgb[channel] |= ((index >> channel) & 1) << (7 - shift)
        index >>= 3
    return tuple(rgb)


def _table(name: str, entries: list[tuple[str, int, tuple[int, int, int] | None]]) -> dict:
    """A class table (the form :func:`cityseg.user_classes.read_class_table` reads) of (name, value, colour)."""
    colors = {tuple(color) for _, _, color in entries if color is not None}
    classes = [
        {"name": label, "id": value, **({"color": list(color)} if color is not None else {})}
        for label, value, color in entries
    ]
    table = {"name": name, "ignore": IGNORE_VALUE, "classes": classes}
    if VOC_BORDER_COLOR not in colors and all(color is not None for _, _, color in entries):
        table["ignore_color"] = list(VOC_BORDER_COLOR)
    return table


VOC_CLASSES: dict = _table("voc21", [(label, index, voc_color(index)) for index, label in enumerate(VOC_NAMES)])


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CitysegError(f"cannot read class list {path}: {exc.strerror or exc}; check the export") from None
    except UnicodeDecodeError as exc:
        raise CitysegError(f"class list {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _rgb(text: str, path: Path, number: int) -> tuple[int, int, int]:
    parts = re.split(r"[,\s]+", text.strip())
    if len(parts) != 3 or not all(part.isdigit() and int(part) <= 255 for part in parts):
        raise CitysegError(f"{path} line {number}: {text!r} is not a colour r,g,b (0-255 each); is it the export's?")
    return tuple(int(part) for part in parts)


def read_labelmap(path: Path) -> dict:
    """CVAT / Datumaro's VOC ``labelmap.txt`` (``name:r,g,b:parts:actions`` per line): the class of line ``i``
    has value ``i`` in palette masks and its colour in RGB masks."""
    entries = []
    for number, line in enumerate(_lines(path), 1):
        name, _, rest = line.partition(":")
        color_text = rest.split(":", 1)[0]
        color = _rgb(color_text, path, number) if color_text.strip() else voc_color(len(entries))
        entries.append((name.strip(), len(entries), color))
    return _table(_name(path), _checked(entries, path))


def read_label_colors(path: Path) -> dict:
    """CVAT / Datumaro's Cityscapes ``label_colors.txt`` (``r g b name`` per line): line ``i`` is label id ``i``."""
    entries = []
    for number, line in enumerate(_lines(path), 1):
        parts = line.split(maxsplit=3)
        if len(parts) < 4:
            raise CitysegError(
                f"{path} line {number}: {line!r} is not 'r g b name'; is it the export's label_colors.txt?"
            )
        entries.append((parts[3].strip(), len(entries), _rgb(" ".join(parts[:3]), path, number)))
    return _table(_name(path), _checked(entries, path))


def read_roboflow_classes(path: Path) -> dict:
    """Roboflow's ``_classes.csv`` (``Pixel Value, Class``): each class with the value its masks hold."""
    rows = list(csv.reader(_lines(path)))
    if not rows or len(rows[0]) < 2:
        raise CitysegError(f"{path} is not Roboflow's _classes.csv (a 'Pixel Value, Class' header and rows)")
    header = [cell.strip().lower() for cell in rows[0]]
    value_at = next((i for i, cell in enumerate(header) if "value" in cell), 0)
    name_at = next((i for i, cell in enumerate(header) if "class" in cell), 1)
    entries = []
    for number, row in enumerate(rows[1:], 2):
        cells = [cell.strip() for cell in row]
        if len(cells) <= max(value_at, name_at) or not cells[value_at].isdigit():
            raise CitysegError(f"{path} line {number}: {','.join(row)!r} is not 'pixel value, class name'")
        entries.append((cells[name_at], int(cells[value_at]), None))
    return _table(_name(path), _checked(entries, path))


def read_coco_json(path: str | os.PathLike) -> object:
    """A COCO annotation file parsed, once per file version for the class list and the image index together
    (:mod:`cityseg.coco`): the files run to hundreds of MB.

    Raises:
        CitysegError: the file cannot be read, or is not JSON.
    """
    return _parse_coco(str(path), file_version(path))


def file_version(path: str | os.PathLike) -> tuple[int, int]:
    """(modification time, size) of a file, to key what is read from it; (0, 0) where it cannot be stat'ed (the
    read then names the file)."""
    try:
        status = os.stat(path)
    except OSError:
        return 0, 0
    return status.st_mtime_ns, status.st_size


@lru_cache(maxsize=2)
def _parse_coco(path: str, version: tuple[int, int]) -> object:
    try:
        with open(path, "rb") as file:
            return json.load(file)
    except OSError as exc:
        raise CitysegError(f"cannot read COCO file {path}: {exc.strerror or exc}; check the export") from None
    except (ValueError, RecursionError) as exc:
        raise CitysegError(f"COCO file {path} is not valid JSON ({str(exc).splitlines()[0]})") from None


def _coco_categories(path: Path) -> list[tuple[int, str]]:
    """(id, name) of a COCO file's categories."""
    values = read_coco_json(path)
    categories = values.get("categories") if isinstance(values, dict) else None
    if not isinstance(categories, list) or not categories:
        raise CitysegError(f"{path} has no 'categories' list; is it a COCO annotation file?")
    found = []
    for category in categories:
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or "name" not in category:
            raise CitysegError(f"{path}: category {category!r} needs an integer 'id' and a 'name'")
        found.append((int(category["id"]), str(category["name"])))
    return found


def read_coco_categories(path: Path) -> dict:
    """The categories of a COCO annotation file, each valued by its id; ``background`` (0) first where no
    category has id 0 (what no annotation covers: the instance files' rule, :mod:`cityseg.coco`)."""
    categories = _coco_categories(path)
    entries = [(name, value, None) for value, name in categories]
    if all(value != 0 for value, _ in categories) and not path.name.lower().startswith("panoptic"):
        entries.insert(0, (BACKGROUND, 0, None))  # panoptic files cover every pixel: what they leave is void
    return _table(_name(path), _checked(entries, path))


def _name(path: Path) -> str:
    """A table's name: the export's folder and the file (``mine-labelmap``), never a built-in set's name."""
    parent = path.resolve().parent
    if parent.name.lower() in ("train", "val", "valid", "validation", "test", "annotations"):
        parent = parent.parent  # Roboflow's train/_classes.csv, COCO's annotations/: the export's own name
    return f"{parent.name or 'export'}-{path.stem.lstrip('_')}"


def _checked(entries: list, path: Path) -> list:
    if not entries:
        raise CitysegError(f"{path} lists no classes; is it the export's class list?")
    for label, value, _ in entries:
        if not 0 <= value < IGNORE_VALUE:
            raise CitysegError(
                f"{path}: class {label!r} has value {value}; cityseg keeps a pixel's class in one byte (0-254): "
                "renumber the classes (or write a class table with --classes)"
            )
    return entries


# file name (lower case) -> reader; COCO files are told by their content (a 'categories' list)
CLASS_LISTS: dict[str, Callable[[Path], dict]] = {
    "labelmap.txt": read_labelmap,
    "label_colors.txt": read_label_colors,
    "label_color.txt": read_label_colors,
    "_classes.csv": read_roboflow_classes,
}


def is_class_list(spec: str | os.PathLike) -> bool:
    """True when ``spec`` names an annotation tool's class list (:data:`CLASS_LISTS`, or a COCO ``.json``)."""
    name = Path(str(spec)).name.lower()
    return name in CLASS_LISTS or (name.endswith(".json") and _looks_coco(name))


def _looks_coco(name: str) -> bool:
    return name.startswith(("instances_", "panoptic_", "stuff_")) or name.endswith(".coco.json")


def read_class_list(path: str | os.PathLike) -> dict:
    """The class table of an annotation tool's class list (see the module docstring)."""
    path = Path(path)
    reader = CLASS_LISTS.get(path.name.lower(), read_coco_categories)
    return reader(path)


def is_cityscapes_list(table: dict) -> bool:
    """True when a class list is the Cityscapes table itself (label ids 0-33 by their official names)."""
    classes = table["classes"]
    if len(classes) < NUM_LABEL_IDS:
        return False

    def plain(name: str) -> str:
        return re.sub(r"[\s_-]", "", name.lower())

    return all(plain(classes[i]["name"]) == plain(LABEL_BY_ID[i].name) for i in range(NUM_LABEL_IDS))
