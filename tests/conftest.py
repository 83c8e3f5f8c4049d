"""Shared fixtures: a tiny model folder, a tiny pair dataset and a tiny Cityscapes release layout.

Each is built once per session in a temporary folder; tests that change one copy it first. The helpers
behind them (:func:`save_tiny_model`, :func:`write_tiny_release`) are importable for tests that need a
variant: ``from conftest import TINY_TEST_MODEL, save_tiny_model``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

# PyAV leaves containers and codec contexts in reference cycles until the garbage collector runs. Freed in a
# forked child (a DataLoader worker, a labelling pool, a test's DDP ranks), a codec context waits forever for
# its threads, which fork did not copy; so the suite's process collects them before every fork.
os.register_at_fork(before=gc.collect)

# The smallest quick network for tests: 0.3 M parameters, ~40 ms forward+backward on 2x3x64x64 (CPU).
# Use as create_model(num_classes=..., **TINY_TEST_MODEL); inputs must be divisible by 8 (encoder_depth 3).
TINY_TEST_MODEL = {
    "arch": "unet",
    "encoder": "tu-mobilenetv3_small_050",
    "encoder_depth": 3,
    "decoder_channels": (32, 16, 8),
}
TINY_INPUT_SIZE = (64, 64)  # (h, w) the tiny model folder's ModelInfo asks for

# the tiny release: real label ids, void ones (0 unlabeled, 1 ego vehicle, 4 static) among them
RELEASE_LABEL_IDS = np.array([0, 1, 4, 7, 8, 11, 17, 21, 23, 24, 26, 33], dtype=np.uint8)
RELEASE_SIZE = (64, 128)  # (H, W): the release's 1:2 shape, tiny
RELEASE_FRAMES = {  # split -> city -> frames; written out of order so the listing's order is discover's own
    "train": {"bochum": ["000010_000019", "000002_000019"], "aachen": ["000000_000100", "000000_000019"]},
    "val": {"frankfurt": ["000001_000077", "000000_000294"]},
}


def save_tiny_model(
    folder: Path, classes: str = "train19", seed: int = 0, input_size: tuple[int, int] = TINY_INPUT_SIZE
) -> Path:
    """A model folder (``models.save_model``) of a randomly initialised tiny network; returns the folder."""
    import torch

    from cityseg.classes import class_set
    from cityseg.models import ModelInfo, create_model, save_model

    torch.manual_seed(seed)
    chosen = class_set(classes)
    net = create_model(num_classes=chosen.num_classes, **TINY_TEST_MODEL).eval()
    info = ModelInfo.from_class_set(TINY_TEST_MODEL["arch"], TINY_TEST_MODEL["encoder"], chosen, input_size)
    return save_model(net, folder, info)


def write_release_frame(root: Path, split: str, city: str, frame: str, rng: np.random.Generator, ids=None) -> Path:
    """One release photo (random pixels) and its gtFine label ids (8x8 blocks of random real ids unless given)."""
    from PIL import Image

    height, width = RELEASE_SIZE
    photo_dir, truth_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    photo_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = photo_dir / f"{city}_{frame}_leftImg8bit.png"
    Image.fromarray(photo).save(path)
    if ids is None:
        blocks = rng.choice(RELEASE_LABEL_IDS, size=(height // 8, width // 8))
        ids = np.kron(blocks, np.ones((8, 8), dtype=np.uint8)).astype(np.uint8)
    Image.fromarray(ids, mode="L").save(truth_dir / f"{city}_{frame}_gtFine_labelIds.png")
    return path


def write_tiny_release(root: Path, seed: int = 0) -> Path:
    """A tiny release: 4 train photos in 2 cities, 2 val photos, and a test split whose truth is all unlabelled."""
    rng = np.random.default_rng(seed)
    for split, cities in RELEASE_FRAMES.items():
        for city, frames in cities.items():
            for frame in frames:
                write_release_frame(root, split, city, frame, rng)
    # the public test split: photos, and gtFine files holding no label (as the release ships them)
    write_release_frame(root, "test", "berlin", "000000_000019", rng, np.zeros(RELEASE_SIZE, np.uint8))
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A train19 model folder of the tiny network (seed 0, 64x64 input); copy it before changing it."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_model_dir):
    """The tiny model folder loaded with the torch backend."""
    from cityseg.predict import Segmenter

    return Segmenter.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory) -> Path:
    """10 synthetic pair images (``train/1.jpg`` ... with ``N_labelIds.png`` beside), seed 0; copy before changing."""
    from cityseg.synth import write_scenes

    root = tmp_path_factory.mktemp("tiny-pairs")
    write_scenes(root, count=10, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory) -> Path:
    """The tiny Cityscapes release of :func:`write_tiny_release`; copy it before changing it."""
    return write_tiny_release(tmp_path_factory.mktemp("cityscapes"))
