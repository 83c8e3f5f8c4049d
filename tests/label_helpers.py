"""Pair images for the label tests: drawn scenes in the official colours, JPEG-encoded like the real pairs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cityseg.classes import LABEL_BY_ID, color_to_label_id

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes_pairs" / "train"
ID_COLOURS = np.zeros((256, 3), dtype=np.uint8)
for _id in range(34):
    ID_COLOURS[_id] = LABEL_BY_ID[_id].color
DRAWABLE_IDS = sorted(set(color_to_label_id().values()))  # ids whose colour maps back to them


def encode_pair(photo: np.ndarray, label_ids: np.ndarray) -> bytes:
    """A pair JPEG as the real ones are stored: quality 95, 4:2:0 chroma."""
    pair = np.concatenate([photo, ID_COLOURS[label_ids]], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pair).save(buffer, "JPEG", quality=95, subsampling=2)
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    pair = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.ascontiguousarray(pair[:, pair.shape[1] // 2 :])


def drawn_scene(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Label ids of a scene of many shapes and edges: sky, road, then 25 random shapes of random classes."""
    image = Image.new("L", (size, size), 23)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, size // 2, size, size], fill=7)
    for _ in range(25):
        label_id = int(rng.choice(DRAWABLE_IDS))
        x, y = rng.integers(0, size - 8, 2)
        w, h = rng.integers(6, size // 3, 2)
        if rng.random() < 0.5:
            draw.rectangle([x, y, x + w, y + h], fill=label_id)
        else:
            draw.ellipse([x, y, x + w, y + h], fill=label_id)
    return np.asarray(image)


def write_pairs(folder: Path, count: int, seed: int = 0, size: int = 64) -> list[Path]:
    """``count`` pair images 1.jpg .. in ``folder``: random photo, drawn scene mask."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        ids = drawn_scene(rng, size)
        photo = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"{i}.jpg"
        path.write_bytes(encode_pair(photo, ids))
        paths.append(path)
    return paths
