"""Annotation tools' exports: the same scenes in every layout read back to the same labels, and at what cost.

``--count`` generated scenes (seeded, 128x256, a fifth of them val) are written by ``cityseg synth --layout``
in each layout below, then read as training reads them (the layout recognised, its class list taken, each
photo decoded with its labels through :class:`cityseg.labelled_folders.LabelSource`). Each layout's labels
are mapped to the 19 training classes by class name (an export's ``background`` and void are "ignored"),
in scene order, and hashed: every layout must give the bytes of the scenes' exact label ids.

Reading cost: the index (recognising the layout, matching photos to labels, a COCO file parsed), the labels
alone (what the label cache's fill reads) and each photo with its labels, per image, against ``images/`` +
``labels/`` in the same run. The photos are each layout's own format (PNG for ``images/``, split folders and
CVAT's Cityscapes, JPEG for the others), so the labels' column is the like-for-like one.

Usage:
    python benchmarks/exports.py [--count 300] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = (128, 256)
VAL_FRACTION = 0.2
SEED = 11
# (row name, layout, label format): the reference first
ROWS = (
    ("images/ + labels/", "images", None),
    ("split folders", "split-folders", None),
    ("Pascal VOC (palette masks)", "voc", None),
    ("CVAT Segmentation mask 1.1 (RGB masks)", "voc", "color"),
    ("CVAT Cityscapes 1.0", "cvat-cityscapes", None),
    ("Roboflow", "roboflow", None),
    ("COCO instances (RLE)", "coco", None),
    ("COCO panoptic", "coco-panoptic", None),
)


def truth_digest(count: int) -> str:
    """SHA-256 of the scenes' exact label ids as train19 classes, in scene order."""
    from cityseg.classes import class_set
    from cityseg.synth import render_scene

    train19, digest = class_set("train19"), hashlib.sha256()
    for index in range(count):
        _, label_ids = render_scene(np.random.default_rng([SEED, index]), SIZE)
        digest.update(train19.from_label_ids(label_ids).tobytes())
    return digest.hexdigest()


def read_layout(root: Path) -> dict:
    """Read every labelled photo of the dataset at ``root`` as training does: the digest, counts and times."""
    from cityseg.classes import class_set
    from cityseg.labelled_folders import dataset_classes, label_source
    from cityseg.pairs import discover

    started = time.perf_counter()
    found = discover(root)
    classes = class_set(dataset_classes(root))
    source = label_source(root)
    source.folder()
    indexed = time.perf_counter() - started
    train19 = class_set("train19")
    to_train19 = np.full(256, 255, dtype=np.uint8)
    for index, name in enumerate(classes.names):
        to_train19[index] = train19.names.index(name) if name in train19.names else 255
    photos = [photo for split in ("all", "train", "val") for photo in found.get(split, [])]
    digest = hashlib.sha256()
    started = time.perf_counter()
    for photo in photos:
        _, labels = source.read(photo, classes, need_photo=False)
        digest.update(to_train19[labels].tobytes())
    labels_only = time.perf_counter() - started
    started = time.perf_counter()
    for photo in photos:
        source.read(photo, classes, need_photo=True)
    read = time.perf_counter() - started
    return {"images": len(photos), "classes": classes.num_classes, "class_source": dataset_classes(root),
            "digest": digest.hexdigest(), "index_s": indexed, "labels_s": labels_only, "read_s": read}  # fmt: skip


def run(count: int) -> list[dict]:
    from cityseg.synth import write_layout

    expected = truth_digest(count)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for number, (title, layout, label_format) in enumerate(ROWS):
            root = Path(scratch) / f"{number}-{layout}"
            write_layout(root, layout, count=count, seed=SEED, val_fraction=VAL_FRACTION, size=SIZE,
                         label_format=label_format)  # fmt: skip
            found = read_layout(root)
            rows.append({"layout": title, "name": layout, **found, "identical": found["digest"] == expected})
            print(f"{title}: {found['images']} images, identical {rows[-1]['identical']}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        "| layout (`synth --layout`) | images | classes | labels identical | index (s) | labels ms/image | vs images/ "
        "| photo + labels ms/image | vs images/ |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = []
        for key in ("labels_s", "read_s"):
            ms = 1000 * row[key] / row["images"]
            cells += [f"{ms:.2f}", f"{row[key] / row['images'] / (base[key] / base['images']):.2f}x"]
        lines.append(
            f"| {row['layout']} (`{row['name']}`) | {row['images']} | {row['classes']} | "
            f"{'yes' if row['identical'] else 'NO'} | {row['index_s']:.2f} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="scenes per layout (default 300)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = run(args.count)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
