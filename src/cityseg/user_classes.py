"""A user's own classes: a class table read from YAML (or JSON), checked, and turned into a :class:`ClassSet`.

A table names the classes a model predicts, the values their pixels have in the dataset's label images,
and how to draw them::

    name: camvid11            # optional: defaults to the file's name
    ignore: 255               # the value(s) of unlabelled pixels in label-id images (default 255; or a list)
    ignore_color: [0, 0, 0]   # optional: the colour(s) of unlabelled pixels in colour label images
    classes:
      - {name: sky, id: 0, color: [128, 128, 128]}
      - {name: building, id: 1, color: [128, 0, 0], category: construction}
      - {name: road, ids: [3, 4], color: [128, 64, 128], draw: [255, 0, 255]}

Per class: ``name``; ``id`` (or ``ids``: several values merged into one class; default: the class's index,
for every class or none); ``color``, its colour in colour label images and, unless ``draw`` says otherwise,
on drawings; ``category`` (optional, for every class or none). Class ``i`` of the table is class index ``i``
of the model. A table whose ids are Cityscapes label ids (road 7, car 26 ...) also reads the Cityscapes
datasets and the pairs' masks, mapped onto its classes; list the ids it leaves out under ``ignore``.

Anything wrong is one line naming the file: a duplicate name, id or colour, an ignore value that is also a
class's id, an unknown key, a value out of range.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.cityscapes import IGNORE_INDEX
from cityseg.class_lists import is_class_list, read_class_list
from cityseg.class_sets import CLASS_SETS, NO_SUCH_VALUE, ClassSet, LabelValues
from cityseg.errors import CitysegError

CLASS_KEYS = ("name", "id", "ids", "color", "draw", "category")
TABLE_KEYS = ("name", "ignore", "ignore_color", "classes")
DEFAULT_IGNORE = 255
TABLE_FILE = "classes.yaml"  # a model folder's copy of its class table (models.save_model writes it)
# drawing colours for classes without one: distinct, in order (the tab20 colours)
_DRAW = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
)  # fmt: skip


def read_class_table(source: str | os.PathLike | dict) -> ClassSet:
    """The :class:`ClassSet` of a class table: a YAML or JSON file, or a table already read (its dict).

    Raises:
        CitysegError: a missing or unreadable file, or a table that breaks a rule (one line naming the file).

    Example:
        >>> cs = read_class_table({"classes": [{"name": "road", "id": 7}, {"name": "car", "id": 26}]})
        >>> cs.names, cs.class_to_id, cs.from_label_ids(np.array([7, 26, 0])).tolist()
        (('road', 'car'), (7, 26), [0, 1, 255])
    """
    if isinstance(source, dict):
        return _class_set(normalize_table(source, str(source.get("name") or "class table")))
    path = Path(source)
    if is_class_list(path):  # an annotation tool's labelmap.txt, _classes.csv, COCO categories ...
        return _class_set(normalize_table(read_class_list(path), str(path)))
    return _class_set(normalize_table(_load(path), str(path), default_name=path.stem))


def _load(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CitysegError(
            f"cannot read class table {path}: {exc.strerror or exc}; check the path (or use train19, "
            "categories or labelids)"
        ) from None
    except UnicodeDecodeError as exc:
        raise CitysegError(f"class table {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise CitysegError(f"class table {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None


def normalize_table(values: Any, source: str, default_name: str = "custom") -> dict:
    """Check a table read from a file and return it complete: every class with ``ids``, ``color``, ``draw``.

    Args:
        values: the parsed file: a mapping (see the module docstring) or a bare list of classes.
        source: names the file in messages.
        default_name: the set's name when the table gives none.

    Returns:
        ``{"name", "ignore": [values], "ignore_color": [colours], "classes": [{"name", "ids", "color", "draw",
        "category"}]}``, JSON-ready: the form a model folder keeps (``cityseg.json``) and :func:`read_class_table`
        reads back.
    """
    if isinstance(values, list):
        values = {"classes": values}
    if not isinstance(values, dict) or not isinstance(values.get("classes"), list) or not values["classes"]:
        raise CitysegError(f"{source}: a class table needs a non-empty 'classes:' list of {{name: ..., id: ...}}")
    _check_keys(values, TABLE_KEYS, source, "the table")
    name = str(values.get("name") or default_name)
    if name in (*CLASS_SETS, "kmeans"):
        raise CitysegError(f"{source}: name {name!r} is a built-in class set's; give the table another name")
    ignore = values.get("ignore", DEFAULT_IGNORE)
    ignore = [_byte(v, source, "an ignore value") for v in (ignore if isinstance(ignore, list) else [ignore])]
    if not ignore:
        raise CitysegError(f"{source}: ignore needs at least one value (255 is the usual)")
    ignore_color = values.get("ignore_color") or []
    # one colour ([r, g, b], '#rrggbb'), not a list of them; anything else (a mapping: found by fuzzing, it
    # raised KeyError: 0) goes to _color, which says what a colour looks like
    if not isinstance(ignore_color, list | tuple) or (ignore_color and not isinstance(ignore_color[0], list | tuple)):
        ignore_color = [ignore_color]
    ignore_color = [_color(color, source, "ignore_color") for color in ignore_color]
    entries = values["classes"]
    if len(entries) >= IGNORE_INDEX:
        raise CitysegError(f"{source}: {len(entries)} classes; at most {IGNORE_INDEX - 1} fit in a uint8 label")
    classes = [_class(entry, index, source) for index, entry in enumerate(entries)]
    _check_all_or_none(classes, entries, source)
    for index, entry in enumerate(classes):
        entry["ids"] = entry["ids"] if entry["ids"] is not None else [index]
        entry["draw"] = entry["draw"] or entry["color"] or list(_DRAW[index % len(_DRAW)])
    _check_unique(classes, ignore, ignore_color, source)
    return {"name": name, "ignore": ignore, "ignore_color": ignore_color, "classes": classes}


def _class(entry: Any, index: int, source: str) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        raise CitysegError(f"{source}: class {index + 1} needs a name: {{name: road, id: 7}}")
    name = entry["name"].strip()
    _check_keys(entry, CLASS_KEYS, source, f"class {name!r}")
    if "id" in entry and "ids" in entry:
        raise CitysegError(f"{source}: class {name!r} has both id and ids; give one")
    ids = entry.get("ids", [entry["id"]] if "id" in entry else None)
    if ids is not None:
        if not isinstance(ids, list) or not ids:
            raise CitysegError(f"{source}: class {name!r}: ids must be a non-empty list of values 0-255")
        ids = [_byte(value, source, f"an id of {name!r}") for value in ids]
    color = entry.get("color")
    draw = entry.get("draw")
    return {
        "name": name,
        "ids": ids,
        "color": None if color is None else _color(color, source, f"the color of {name!r}"),
        "draw": None if draw is None else _color(draw, source, f"the draw colour of {name!r}"),
        "category": None if entry.get("category") is None else str(entry["category"]),
    }


def _check_keys(entry: dict, allowed: tuple[str, ...], source: str, what: str) -> None:
    unknown = [str(key) for key in entry if key not in allowed]
    if unknown:
        raise CitysegError(f"{source}: {what} has unknown key {unknown[0]!r}; keys: {', '.join(allowed)}")


def _check_all_or_none(classes: list[dict], entries: list, source: str) -> None:
    """Ids and categories are for every class or for none: a table half of which has them is a mistake."""
    rules = (("an id", lambda e: "id" in e or "ids" in e), ("a category", lambda e: "category" in e))
    for what, given in rules:
        have = [c["name"] for c, e in zip(classes, entries, strict=True) if given(e)]
        lack = [c["name"] for c, e in zip(classes, entries, strict=True) if not given(e)]
        if have and lack:
            raise CitysegError(
                f"{source}: class {lack[0]!r} has no {what[what.index(' ') + 1 :]} but {have[0]!r} has one; "
                f"give every class {what} or none"
            )


def _check_unique(classes: list[dict], ignore: list[int], ignore_color: list[list[int]], source: str) -> None:
    names: dict[str, int] = {}
    ids: dict[int, str] = {}
    colors: dict[tuple, str] = {}
    for index, entry in enumerate(classes):
        name = entry["name"]
        if name in names:
            raise CitysegError(
                f"{source}: class name {name!r} is used twice (classes {names[name] + 1} and {index + 1}); "
                "names must be unique"
            )
        names[name] = index
        for value in entry["ids"]:
            if value in ignore:
                raise CitysegError(
                    f"{source}: the ignore value {value} is also an id of class {name!r}; change 'ignore:' or the id"
                )
            if value in ids:
                raise CitysegError(
                    f"{source}: id {value} is given to both {ids[value]!r} and {name!r}; give each id one class "
                    "(list several ids under one class to merge them)"
                )
            ids[value] = name
        if entry["color"] is not None:
            color = tuple(entry["color"])
            if list(color) in ignore_color:
                raise CitysegError(f"{source}: the ignore_color {color} is also the color of class {name!r}")
            if color in colors:
                raise CitysegError(
                    f"{source}: color {color} is given to both {colors[color]!r} and {name!r}; "
                    "a colour label image could not tell them apart"
                )
            colors[color] = name


def _byte(value: Any, source: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise CitysegError(f"{source}: {what} must be a whole number 0-255, not {value!r}")
    return int(value)


def _color(value: Any, source: str, what: str) -> list[int]:
    if isinstance(value, str) and re.fullmatch(r"#?[0-9a-fA-F]{6}", value.strip()):
        text = value.strip().lstrip("#")
        return [int(text[i : i + 2], 16) for i in (0, 2, 4)]
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise CitysegError(f"{source}: {what} must be [r, g, b] (0-255 each) or '#rrggbb', not {value!r}")
    return [_byte(v, source, what) for v in value]


def _class_set(table: dict) -> ClassSet:
    id_to_class = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for index, entry in enumerate(table["classes"]):
        id_to_class[entry["ids"]] = index
    return ClassSet(
        name=table["name"],
        names=tuple(entry["name"] for entry in table["classes"]),
        colors=tuple(tuple(entry["draw"]) for entry in table["classes"]),
        id_to_class=id_to_class,
        class_to_id=tuple(entry["ids"][0] for entry in table["classes"]),
        table=table,
        label_values=_table_values(table),
    )


def _table_values(table: dict) -> LabelValues:
    """What the values of the table's label images mean: its own ids, its class indices, its own colours."""
    ids = np.full(256, NO_SUCH_VALUE, dtype=np.int16)
    for index, entry in enumerate(table["classes"]):
        ids[entry["ids"]] = index
    ids[table["ignore"]] = IGNORE_INDEX
    num_classes = len(table["classes"])
    train_ids = np.full(256, NO_SUCH_VALUE, dtype=np.int16)
    train_ids[table["ignore"]] = IGNORE_INDEX
    train_ids[IGNORE_INDEX] = IGNORE_INDEX
    train_ids[:num_classes] = np.arange(num_classes)  # an index wins over an ignore value
    found = {tuple(e["color"]): i for i, e in enumerate(table["classes"]) if e.get("color")}
    colors = {**found, **{tuple(color): IGNORE_INDEX for color in table.get("ignore_color") or []}}
    return LabelValues(ids, train_ids, colors, ignore_id=int(table["ignore"][0]))


def table_yaml(classes: ClassSet) -> str:
    """A user's table as YAML (what a model folder's ``classes.yaml`` holds), readable by :func:`read_class_table`."""
    import yaml

    if not classes.table:
        raise CitysegError(f"{classes.name} is a built-in class set, not a table")

    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # a colour used twice is written twice, not as &id001 / *id001

    table = {key: value for key, value in classes.table.items() if value not in (None, [])}
    table["classes"] = [
        {k: v for k, v in entry.items() if v is not None and not (k == "draw" and v == entry["color"])}
        for entry in classes.table["classes"]
    ]
    return yaml.dump(table, Dumper=_NoAliases, sort_keys=False, default_flow_style=None)
