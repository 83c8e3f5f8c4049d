"""COCO exports as labelled folders: instance polygons and RLE masks, and panoptic PNGs, rasterised to classes.

What annotation tools export as "COCO" (CVAT's ``annotations/instances_default.json`` + ``images/``, Roboflow's
``SPLIT/_annotations.coco.json`` beside its photos, the COCO release's ``annotations/instances_train2017.json``
+ ``train2017/``, COCO-Stuff's ``stuff_*.json``, and ``panoptic_*.json`` with its PNG folder) is read as it is:

* The annotation files are found in the root, in ``annotations/`` and in split folders (:func:`coco_files`):
  ``panoptic_*.json`` for the ``coco-panoptic`` layout (found first), else ``instances_*.json``, then
  ``stuff_*.json`` and Roboflow's ``*.coco.json``, one per split; a split's name comes from the file
  (``instances_val2017``: ``val``; ``instances_default``: one pool, split by seed) or its folder
  (``valid/_annotations.coco.json``).
* Each image's ``file_name`` is looked for beside the file, in ``images/`` and in the split's folder
  (``train2017/``); the photo must be there.
* Instances (polygons, RLE, uncompressed RLE: pycocotools, the maintained reader) are rasterised in file
  order onto 0, ``background``, what no annotation covers. **Overlaps:** a pixel that annotations of two
  different categories cover is ignored (255), as torchvision's segmentation references do; one category's
  overlapping instances keep it. A polygon that leaves its image is an error, not a silent clip.
* Panoptic PNGs (segment id ``R + 256 G + 65536 B``) take each segment's category; void pixels are ignored.

The rasterised values are category ids, read through the class table like label ids (:mod:`cityseg.class_lists`
makes it from the file's ``categories``; ``--classes`` may merge or drop them): a category the table lacks is
a one-line error naming the file, the id and its pixels.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cityseg.class_lists import file_version, read_coco_json
from cityseg.classes import IGNORE_INDEX, ClassSet
from cityseg.errors import CitysegError
from cityseg.layouts import Layout, split_of

log = logging.getLogger(__name__)
KINDS = ("panoptic", "instances", "stuff", "coco")  # a split's file: the first kind found
EDGE = 1.0  # pixels a polygon point may lie beyond the image's edge (tools round outward)


def _kind(path: Path) -> str:
    name = path.name.lower()
    return next((kind for kind in KINDS if name.startswith(kind) or name.endswith(f".{kind}.json")), "coco")


def _split(path: Path, root: Path) -> str:
    """The split a COCO file is of: its name's (``instances_val2017``), else its folder's, else ``all``."""
    stem = re.sub(r"^(instances|panoptic|stuff)_", "", path.stem.lower()).removesuffix(".coco")
    named = split_of(Path(re.sub(r"\d+$", "", stem)))
    if named != "all":
        return named
    return split_of(path.parent.relative_to(root)) if path.parent != root else "all"


def coco_files(root: str | Path, layout: Layout) -> list[Path]:
    """The annotation file of each split of the COCO export at ``root`` (see the module docstring)."""
    root = Path(root)
    patterns = layout.marker_files
    found = sorted({p for pattern in patterns for p in [*root.glob(pattern), *root.glob(f"*/{pattern}")]})
    chosen: dict[str, Path] = {}
    for path in sorted(found, key=lambda p: (KINDS.index(_kind(p)), str(p))):
        chosen.setdefault(_split(path, root), path)
    return sorted(chosen.values())


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO file: where its photo is, its size, and what to rasterise."""

    file_name: str
    height: int
    width: int
    annotations: tuple  # instances: the annotation dicts; panoptic: (PNG path, {segment id: category id})


def load_coco(path: str) -> dict[int, CocoImage]:
    """Image id -> :class:`CocoImage` of a COCO file, indexed once per process (again once it changes)."""
    return _index_coco_file(path, file_version(path))


@lru_cache(maxsize=4)
def _index_coco_file(path: str, version: tuple[int, int]) -> dict[int, CocoImage]:
    file, values = Path(path), read_coco_json(path)  # the parse the class list was read from
    if not isinstance(values, dict) or not isinstance(values.get("images"), list):
        raise CitysegError(f"{file} has no 'images' list; is it a COCO annotation file?")
    images: dict[int, CocoImage] = {}
    try:
        by_image: dict[int, list] = {}
        for annotation in values.get("annotations") or []:
            by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
        for image in values["images"]:
            found = by_image.get(int(image["id"]), [])
            if _kind(file) == "panoptic":
                found = [_panoptic(file, found[0])] if found else []
            images[int(image["id"])] = CocoImage(
                str(image["file_name"]), int(image["height"]), int(image["width"]), tuple(found)
            )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CitysegError(f"{file}: an image or annotation lacks {exc} or has a wrong value; is it COCO?") from None
    return images


def _panoptic(file: Path, annotation: dict) -> tuple[Path, dict[int, int]]:
    folder = file.parent / file.stem
    png = folder / annotation["file_name"] if folder.is_dir() else file.parent / annotation["file_name"]
    return png, {int(s["id"]): int(s["category_id"]) for s in annotation["segments_info"]}


def index_coco(root: Path, layout: Layout, skip_bad: bool) -> list[tuple[str, list[tuple[Path, CocoTruth]]]]:
    """Each split of a COCO export with its photos, each with the :class:`CocoTruth` that rasterises its labels.

    Raises:
        CitysegError: an unreadable file, or (without ``skip_bad``) images it names that are not there.
    """
    found = []
    for file in coco_files(root, layout):
        matched, missing = [], []
        for image_id, image in load_coco(str(file)).items():
            photo = _photo(root, file, image.file_name)
            if photo is None:
                missing.append(image.file_name)
            else:
                matched.append((photo, CocoTruth(str(file), image_id)))
        if missing:
            message = (
                f"{file} names {len(missing)} image(s) not found beside it, in images/ or in its split folder "
                f"({', '.join(missing[:5])})"
            )
            if not skip_bad:
                raise CitysegError(f"{message}; add them or remove their entries (or pass --skip-bad)")
            log.warning("skipped %s", message)
        found.append((_split(file, root), sorted(matched, key=lambda item: str(item[0]))))
    return found


def _photo(root: Path, file: Path, file_name: str) -> Path | None:
    folder = re.sub(r"^(instances|panoptic|stuff)_", "", file.stem)
    for base in (file.parent, root / "images", root / "images" / folder, root / folder, file.parent.parent, root):
        candidate = base / file_name
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class CocoTruth:
    """The annotations of one image of a COCO file, rasterised to classes when read."""

    file: str
    image_id: int

    def __str__(self) -> str:
        return f"{self.file} (image {self.image_id})"

    def read(self, classes: ClassSet) -> np.ndarray:
        """(H, W) uint8 class indices of the image's annotations (see the module docstring)."""
        from cityseg.label_formats import LABEL_FORMATS

        image = load_coco(self.file)[self.image_id]
        source = f"{self.file} (image {self.image_id}, {image.file_name})"
        if image.annotations and isinstance(image.annotations[0], tuple):
            values = panoptic_values(*image.annotations[0], source=source)
        else:
            values = rasterise(image.annotations, image.height, image.width, source)
        return LABEL_FORMATS["labelids"].decode(values, classes, source)


def rasterise(annotations: tuple | list, height: int, width: int, source: str) -> np.ndarray:
    """(H, W) int32 category ids of instance annotations: 0 where none, 255 where two categories overlap."""
    values = np.zeros((height, width), dtype=np.int32)
    for annotation in annotations:
        mask = instance_mask(annotation, height, width, source)
        category = int(annotation.get("category_id", -1))
        taken = values[mask]
        values[mask] = np.where((taken == 0) | (taken == category), category, IGNORE_INDEX)
    return values


def instance_mask(annotation: dict, height: int, width: int, source: str) -> np.ndarray:
    """(H, W) bool mask of one annotation's ``segmentation``: polygons, RLE or uncompressed RLE."""
    from pycocotools import mask as coco_mask

    where = f"{source}, annotation {annotation.get('id', '?')}"
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        polygons = [_polygon(polygon, height, width, where) for polygon in segmentation]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise CitysegError(f"{where}: its RLE mask is {segmentation['size']} (h, w) but the image is "
                               f"[{height}, {width}]; re-export the annotations")  # fmt: skip
        counts = segmentation["counts"]
        rle = coco_mask.frPyObjects(segmentation, height, width) if isinstance(counts, list) else segmentation
        if isinstance(rle.get("counts"), str):
            rle = {**rle, "counts": rle["counts"].encode("ascii")}
    else:
        raise CitysegError(f"{where}: 'segmentation' is neither polygons nor an RLE mask; is it a COCO export?")
    try:
        return coco_mask.decode(rle).astype(bool)
    except (ValueError, TypeError) as exc:
        raise CitysegError(f"{where}: its RLE mask cannot be decoded ({exc})") from None


def _polygon(polygon: object, height: int, width: int, where: str) -> list[float]:
    if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
        raise CitysegError(f"{where}: a polygon needs x, y pairs of at least 3 points, not {str(polygon)[:60]}")
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    outside = (
        (points[:, 0] < -EDGE) | (points[:, 0] > width + EDGE) | (points[:, 1] < -EDGE) | (points[:, 1] > height + EDGE)
    )
    if outside.any() or not np.isfinite(points).all():
        x, y = points[np.flatnonzero(outside | ~np.isfinite(points).all(1))[0]]
        raise CitysegError(
            f"{where}: polygon point ({x:g}, {y:g}) is outside its {width}x{height} image; fix the annotation "
            "(or pass --skip-bad)"
        )
    return [float(v) for v in polygon]


def panoptic_values(png: Path, segments: dict[int, int], source: str) -> np.ndarray:
    """(H, W) int32 category ids of a panoptic PNG: each segment's category, void (no segment) 255."""
    from cityseg.images import decode_raw

    with decode_raw(png) as image:
        if image.mode != "RGB":
            raise CitysegError(f"{png} ({source}) has {image.mode} pixels; a panoptic PNG is RGB segment ids")
        rgb = np.asarray(image).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    lookup_ids = np.array(sorted(segments), dtype=np.int64)
    categories = np.array([segments[i] for i in lookup_ids], dtype=np.int32)
    position = np.clip(np.searchsorted(lookup_ids, ids), 0, max(len(lookup_ids) - 1, 0))
    known = lookup_ids[position] == ids if len(lookup_ids) else np.zeros(ids.shape, dtype=bool)
    return np.where(known, categories[position] if len(categories) else 0, IGNORE_INDEX).astype(np.int32)
