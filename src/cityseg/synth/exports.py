"""Scenes written as annotation tools export them: Pascal VOC (CVAT), CVAT's Cityscapes, Roboflow, COCO.

``cityseg synth OUT --layout voc`` (``cvat-cityscapes``, ``roboflow``, ``coco``, ``coco-panoptic``,
``split-folders``) writes a miniature of the export from the scenes' exact label ids, with the export's own
class list, so each is tested end to end and a user can see what cityseg expects.

The exports' classes are the tools' usual: ``background`` (value 0: pixels of no training class) and the 19
Cityscapes training classes as values 1-19 (COCO: category ids 1-19; panoptic leaves background void).
CVAT's Cityscapes export keeps the official label ids and lists the official table, so it reads as
``train19``, as the release does.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cityseg.cityscapes import LABEL_BY_ID, NUM_LABEL_IDS
from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.errors import CitysegError
from cityseg.layouts import LAYOUTS
from cityseg.synth.labelled import SPLIT_FOLDER_NAMES, SceneWriter, _write, scene_paths, write_labelled, write_text

BACKGROUND = "background"
TRAIN19 = class_set("train19")
EXPORT_NAMES = (BACKGROUND, *TRAIN19.names)
EXPORT_COLORS = ((0, 0, 0), *TRAIN19.colors)


def export_values(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) official label ids -> the exports' values: 0 background, a training class's train id + 1."""
    train_ids = TRAIN19.from_label_ids(label_ids).astype(np.int16)
    return np.where(train_ids == IGNORE_INDEX, 0, train_ids + 1).astype(np.uint8)


class VocWriter(SceneWriter):
    """Pascal VOC as CVAT's "Segmentation mask 1.1" writes it: palette masks (``--label-format color``: RGB
    masks), ``labelmap.txt`` and ``ImageSets/Segmentation/{train,val}.txt``."""

    def __init__(self, *args):
        super().__init__(*args)
        self.names: dict[str, list[str]] = {}

    def label_pixels(self, label_ids: np.ndarray) -> Image.Image:
        values = export_values(label_ids)
        if self.label_format == "color":
            return Image.fromarray(np.asarray(EXPORT_COLORS, dtype=np.uint8)[values])
        mask = Image.fromarray(values, mode="L").convert("P")
        mask.putpalette([channel for color in EXPORT_COLORS for channel in color])
        return mask

    def scene(self, split: str, number: int, photo: np.ndarray, label_ids: np.ndarray) -> None:
        super().scene(split, number, photo, label_ids)
        photo_name, _ = scene_paths(self.layout, split, number, self.label_format, self.flat)
        self.names.setdefault(split, []).append(Path(photo_name).stem)

    def finish(self, counts: dict[str, int]) -> None:
        lines = ["# label:color_rgb:parts:actions"]
        lines += [
            f"{name}:{','.join(map(str, color))}::" for name, color in zip(EXPORT_NAMES, EXPORT_COLORS, strict=True)
        ]
        write_text(self.out / "labelmap.txt", "\n".join(lines) + "\n")
        for split, names in self.names.items():
            write_text(self.out / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(names) + "\n")


class CvatCityscapesWriter(SceneWriter):
    """CVAT's "Cityscapes 1.0": the release's folders under ``imgsFine/``, and ``label_colors.txt``."""

    def finish(self, counts: dict[str, int]) -> None:
        lines = [
            f"{' '.join(map(str, LABEL_BY_ID[i].color))} {LABEL_BY_ID[i].name.replace(' ', '')}"
            for i in range(NUM_LABEL_IDS)
        ]
        write_text(self.out / "label_colors.txt", "\n".join(lines) + "\n")


class RoboflowWriter(SceneWriter):
    """Roboflow's "Semantic Segmentation Masks": ``train/`` and ``valid/`` with ``NAME.jpg`` beside
    ``NAME_mask.png`` (values) and ``_classes.csv``."""

    def label_pixels(self, label_ids: np.ndarray) -> Image.Image:
        return Image.fromarray(export_values(label_ids), mode="L")

    def finish(self, counts: dict[str, int]) -> None:
        text = io.StringIO()
        rows = csv.writer(text, lineterminator="\n")
        rows.writerow(["Pixel Value", " Class"])
        rows.writerows([value, f" {name}"] for value, name in enumerate(EXPORT_NAMES))
        for split in counts:
            write_text(self.out / SPLIT_FOLDER_NAMES.get(("roboflow", split), split) / "_classes.csv", text.getvalue())


class CocoWriter(SceneWriter):
    """COCO: ``images/<split>/`` and ``annotations/instances_<split>.json``, each class of a scene one RLE mask."""

    kind = "instances"

    def __init__(self, *args):
        super().__init__(*args)
        self.files: dict[str, dict] = {}

    def check_empty(self) -> None:
        if any(self.out.iterdir()):
            raise CitysegError(f"{self.out} is not empty; choose an empty output folder for the scenes")

    def scene(self, split: str, number: int, photo: np.ndarray, label_ids: np.ndarray) -> None:
        name = scene_paths(self.layout, split, number, self.label_format, self.flat)[0].rsplit("/", 1)[-1]
        split_name = "train" if split == "all" else split
        _write(self.out / "images" / split_name / name, photo, None)
        data = self.files.setdefault(split_name, {"images": [], "annotations": [], "categories": _categories()})
        image_id = len(data["images"]) + 1
        height, width = label_ids.shape
        data["images"].append({"id": image_id, "file_name": name, "height": height, "width": width})
        self.annotate(data, image_id, export_values(label_ids), split_name, name)

    def annotate(self, data: dict, image_id: int, values: np.ndarray, split: str, name: str) -> None:
        from pycocotools import mask as coco_mask

        for value in np.unique(values):
            if value == 0:
                continue  # background: what no annotation covers
            rle = coco_mask.encode(np.asfortranarray(values == value))
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": int(value),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": int(coco_mask.area(rle)), "bbox": [float(v) for v in coco_mask.toBbox(rle)], "iscrowd": 0,
            })  # fmt: skip

    def finish(self, counts: dict[str, int]) -> None:
        for split, data in self.files.items():
            write_text(self.out / "annotations" / f"{self.kind}_{split}.json", json.dumps(data))


class CocoPanopticWriter(CocoWriter):
    """COCO panoptic: ``annotations/panoptic_<split>.json`` and its PNGs of segment ids, one segment per class."""

    kind = "panoptic"

    def annotate(self, data: dict, image_id: int, values: np.ndarray, split: str, name: str) -> None:
        segments = 1000 * values.astype(np.int64)  # segment id of class v: 1000 v; background 0 is void
        rgb = np.stack([segments % 256, segments // 256 % 256, segments // 65536], axis=-1).astype(np.uint8)
        png = f"{Path(name).stem}.png"
        _write(self.out / "annotations" / f"panoptic_{split}" / png, None, Image.fromarray(rgb))
        info = [
            {"id": 1000 * int(v), "category_id": int(v), "iscrowd": 0, "area": int((values == v).sum())}
            for v in np.unique(values)
            if v
        ]
        data["annotations"].append({"image_id": image_id, "file_name": png, "segments_info": info})


def _categories() -> list[dict]:
    from cityseg.cityscapes import LABEL_BY_NAME

    return [
        {"id": i + 1, "name": name, "supercategory": LABEL_BY_NAME[name].category,
         "isthing": int(LABEL_BY_NAME[name].has_instances)}
        for i, name in enumerate(TRAIN19.names)
    ]  # fmt: skip


EXPORT_WRITERS: dict[str, type[SceneWriter]] = {
    "voc": VocWriter,
    "cvat-cityscapes": CvatCityscapesWriter,
    "roboflow": RoboflowWriter,
    "coco": CocoWriter,
    "coco-panoptic": CocoPanopticWriter,
}


def write_layout(out: str | Path, layout: str, **options):
    """Write scenes as ``layout`` keeps them: a public dataset's (:func:`~cityseg.synth.write_labelled`) or an
    annotation tool's export (:data:`EXPORT_WRITERS`); the same options. Returns the ``LayoutSummary``.

    Example:
        >>> print(write_layout("data/voc-synth", "voc", count=20, val_fraction=0.25))  # doctest: +SKIP
    """
    if (
        layout in LAYOUTS
        and LAYOUTS[layout].annotations == "coco"
        and options.get("label_format") not in (None, "labelids")
    ):
        raise CitysegError(f"{layout} exports annotations, not label images; drop --label-format")
    return write_labelled(out, layout, writer=EXPORT_WRITERS.get(layout, SceneWriter), **options)
