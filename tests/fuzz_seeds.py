"""The valid inputs the fuzz targets start from, all made by the project: a drawn street scene as a photo in every
format and mode, as a pair image and as label images in every format; a generated drive as videos; a tiny saved
model folder; small checkpoints; class tables and the config presets (and the keys their text is generated from).
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np


@functools.cache
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A drawn street scene at 64x128: photo (H, W, 3) uint8 and its official label ids (H, W) uint8."""
    from PIL import Image

    from cityseg.synth import write_scenes

    with tempfile.TemporaryDirectory() as name:
        write_scenes(name, count=1, seed=7)
        pair = Image.open(Path(name) / "train" / "1.jpg").convert("RGB")
        ids = Image.open(Path(name) / "train" / "1_labelIds.png")
        half = pair.width // 2
        photo = pair.crop((0, 0, half, pair.height)).resize((128, 64))
        return np.asarray(photo), np.asarray(ids.resize((128, 64), Image.NEAREST))


def encoded(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@functools.cache
def photo_seeds() -> list[bytes]:
    """The photo in the formats and modes a camera or a user's folder holds."""
    from PIL import Image

    photo = Image.fromarray(scene()[0])
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the upright photo is 128 wide, 64 high
    grey16 = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).convert("I;16")
    return [
        encoded(photo, "JPEG", quality=90),
        encoded(photo, "JPEG", quality=80, progressive=True, exif=exif.tobytes()),
        encoded(photo.convert("CMYK"), "JPEG"),
        encoded(photo, "PNG"),
        encoded(photo.convert("P", palette=Image.ADAPTIVE), "PNG"),
        encoded(photo.convert("L"), "PNG"),
        encoded(photo.convert("RGBA"), "PNG"),
        encoded(grey16, "PNG"),
        encoded(photo, "TIFF"),
        encoded(photo, "WEBP", quality=80),
        encoded(photo, "BMP"),
        encoded(photo.convert("P"), "GIF"),
    ]


@functools.cache
def pair_seeds() -> list[bytes]:
    """Pair images as the datasets store them (JPEG 4:2:0, PNG, palette PNG): photo left, colour mask right."""
    from PIL import Image

    from cityseg.classes import LABEL_BY_ID

    photo, ids = scene()
    colours = np.zeros((256, 3), np.uint8)
    for label_id, label in LABEL_BY_ID.items():
        if 0 <= label_id < 256:
            colours[label_id] = label.color
    pair = Image.fromarray(np.concatenate([photo[:, :64], colours[ids[:, :64]]], axis=1))
    return [encoded(pair, "JPEG", quality=95, subsampling=2), encoded(pair, "PNG"), encoded(pair.convert("P"), "PNG")]


@functools.cache
def label_seeds() -> list[bytes]:
    """Label images in every format: label ids, train ids, colours, 16-bit ids, palette colours."""
    from PIL import Image

    from cityseg.synth.labelled import LABEL_ENCODERS

    ids = scene()[1]
    written = [encoded(Image.fromarray(encode(ids)), "PNG") for encode in LABEL_ENCODERS.values()]
    colours = Image.fromarray(LABEL_ENCODERS["color"](ids))
    extra = [
        encoded(Image.fromarray(ids.astype(np.uint16)).convert("I;16"), "PNG"),
        encoded(colours.convert("P"), "PNG"),
        encoded(colours, "JPEG", quality=95),
    ]
    return written + extra


@functools.cache
def video_seeds() -> list[bytes]:
    """A short generated drive (4 frames, 32x64) as ``synth --video`` writes it (H.264 in MP4, Matroska and
    QuickTime), and the same frames as VP8 in WebM."""
    import av

    from cityseg.synth.drive import write_drive

    made = []
    with tempfile.TemporaryDirectory() as name:
        for suffix in (".mp4", ".mkv", ".mov"):
            video = Path(name) / f"drive{suffix}"
            write_drive(video, seconds=0.4, fps=10, size=(32, 64), seed=3)
            made.append(video.read_bytes())
        webm = Path(name) / "drive.webm"
        with av.open(str(Path(name) / "drive.mp4")) as source, av.open(str(webm), "w") as target:
            stream = target.add_stream("libvpx", rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
            for frame in source.decode(video=0):
                frame.pts = None
                target.mux(stream.encode(frame))
            target.mux(stream.encode())
        made.append(webm.read_bytes())
    return made


@functools.cache
def model_seed() -> dict[str, bytes]:
    """The files of a tiny saved model folder (random weights): ``cityseg.json``, ``config.json``, weights."""
    import torch

    from cityseg.classes import class_set
    from cityseg.models import ModelInfo, create_model, save_model

    torch.manual_seed(0)
    chosen = class_set("categories")
    net = create_model(
        num_classes=chosen.num_classes,
        arch="unet",
        encoder="tu-mobilenetv3_small_050",
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
    ).eval()
    info = ModelInfo.from_class_set("unet", "tu-mobilenetv3_small_050", chosen, (32, 32))
    with tempfile.TemporaryDirectory() as name:
        folder = save_model(net, Path(name) / "model", info)
        return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@functools.cache
def checkpoint_seeds() -> list[bytes]:
    """Lightning-style checkpoints as ``torch.save`` writes them (zip), small."""
    import torch

    made = []
    for extra in ({}, {"epoch": 3, "global_step": 40, "optimizer_states": [{"lr": 0.001}]}):
        buffer = io.BytesIO()
        torch.save({"state_dict": {"net.weight": torch.arange(12.0).reshape(3, 4)}, **extra}, buffer)
        made.append(buffer.getvalue())
    return made


def class_tables() -> list[str]:
    from cityseg.classes import class_set
    from cityseg.user_classes import table_yaml

    return [
        "name: mine\nclasses:\n  - {name: road, id: 7}\n  - {name: car, id: 26, color: [0, 0, 142]}\nignore: [0]\n",
        "classes:\n  - name: lane\n    color: '#ff00ff'\n  - name: rest\n    color: [0, 0, 0]\n",
        table_yaml(class_set("categories")) if class_set("categories").table else "classes: []\n",
    ]


def class_table_keys() -> list[str]:
    return ["name", "classes", "id", "ids", "color", "colors", "ignore", "ignore_color", "label_format"]


def config_texts() -> list[str]:
    from cityseg.config import PRESETS, preset_path

    return [preset_path(name).read_text() for name in PRESETS]


def config_keys() -> list[str]:
    from cityseg.config import Config

    return [key for section in Config().to_dict().values() for key in section] + list(Config().to_dict())


@functools.cache
def export_seeds() -> dict[str, bytes]:
    """Each annotation tool's export in miniature (2 scenes, written by synth --layout): relative path -> bytes."""
    import tempfile

    from cityseg.synth import write_layout

    made: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for layout in ("voc", "cvat-cityscapes", "roboflow", "coco", "coco-panoptic"):
            root = Path(scratch) / layout
            write_layout(root, layout, count=2, seed=5, size=(32, 32))
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    made[f"{layout}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return made


def class_list_seeds() -> list[tuple[str, bytes]]:
    """(file name, bytes) of each export's class list (labelmap.txt, label_colors.txt, _classes.csv, COCO)."""
    names = ("labelmap.txt", "label_colors.txt", "_classes.csv", ".json")
    return [(path.rsplit("/", 1)[-1], data) for path, data in export_seeds().items() if path.endswith(names)]
