"""Shared fixtures: a tiny model folder, a tiny pair dataset, a tiny Cityscapes release layout, every known
layout of photos and label images (KITTI, BDD100K, ACDC, Dark Zurich, images/ + labels/) in miniature, and the
generated scenes and tiny training config of the training tests (:func:`tiny_config`).

Each is built once per session in a temporary folder; tests that change one copy it first. The helpers
behind them (:func:`save_tiny_model`, :func:`write_tiny_release`, :func:`write_layouts`) are importable for
tests that need a variant: ``from conftest import TINY_TEST_MODEL, save_tiny_model``.
"""

from __future__ import annotations

import csv
import gc
import os
from pathlib import Path

import numpy as np
import pytest

# PyAV leaves containers and codec contexts in reference cycles until the garbage collector runs. Freed in a
# forked child (a DataLoader worker, a labelling pool, a test's DDP ranks), a codec context waits forever for
# its threads, which fork did not copy. So every fork freezes what the suite's process holds: the child's
# collector never frees the parent's objects, and the parent gets them back as they were. (Collecting before
# each fork instead crashed the suite's process in a later labelling pool.)
os.register_at_fork(before=gc.freeze, after_in_parent=gc.unfreeze)

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


# the miniature layouts: scenes per dataset, their shares of val scenes, their size (H, W), and the seed
LAYOUT_SCENES, LAYOUT_VAL, LAYOUT_SEED = 6, 1 / 3, 3
LAYOUT_SIZES = {"kitti": (48, 160)}  # KITTI's wide shape; the others (64, 128)


def write_layouts(root: Path, seed: int = LAYOUT_SEED) -> dict[str, Path]:
    """Each known layout at ``root/<layout>``, drawn by ``cityseg synth --layout``: name -> dataset root.

    The scenes' labels are encoded from their exact label ids in each dataset's own format (BDD100K: train
    ids), so reading them back must give exactly the classes of the ids (:func:`scene_label_ids`).
    """
    from cityseg.layouts import LAYOUTS
    from cityseg.synth import write_labelled

    written = {}
    for name, layout in LAYOUTS.items():
        val = 0.0 if layout.split_folders == "never" else LAYOUT_VAL
        size = LAYOUT_SIZES.get(name, (64, 128))
        write_labelled(root / name, name, count=LAYOUT_SCENES, seed=seed, val_fraction=val, size=size)
        written[name] = root / name
    return written


def scene_label_ids(layout: str, split: str, number: int, seed: int = LAYOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(photo, exact label ids) of scene ``number`` of ``split`` in :func:`write_layouts`' ``layout``."""
    from cityseg.synth import render_scene

    n_val = 0 if layout == "kitti" else round(LAYOUT_SCENES * LAYOUT_VAL)
    index = number + (LAYOUT_SCENES - n_val if split == "val" else 0)
    return render_scene(np.random.default_rng([seed, index]), LAYOUT_SIZES.get(layout, (64, 128)))


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks folder is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_model(
    folder: Path, classes: str | dict = "train19", seed: int = 0, input_size: tuple[int, int] = TINY_INPUT_SIZE
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


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The suite's own cache folder: tests (and the commands they start) never fill or read the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A train19 model folder of the tiny network (seed 0, 64x64 input); copy it before changing it."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_model_dir):
    """The tiny model folder loaded with the torch backend."""
    from cityseg.engine import Segmenter

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


@pytest.fixture(scope="session")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Every known layout in miniature (:func:`write_layouts`): name -> root; copy one before changing it."""
    return write_layouts(tmp_path_factory.mktemp("layouts"))


# ---- training ----------------------------------------------------------------------------------------


def read_history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    from cityseg.synth import write_scenes

    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, count=16, seed=5, val_fraction=0.25)  # 12 train (9 train + 3 validation), 4 test
    return root


def tiny_config(root: Path, runs: Path, **settings):
    """A network small enough to train in seconds: ResNet18, 3 encoder stages, narrow decoder, 64x64 input."""
    from cityseg.config import Config

    config = Config()
    config.data.root = str(root)
    config.data.cache_dir = str(runs / "cache")
    config.train.runs_dir = str(runs)
    config.override(
        [
            "data.size=64,64",
            "data.batch_size=3",
            "data.workers=0",
            "data.val_fraction=0.25",
            "model.encoder=resnet18",
            "model.encoder_depth=3",
            "model.decoder_width=32",
            "optim.lr=0.003",
            "optim.schedule=none",
            "augment.enabled=false",
            "train.max_epochs=2",
            "train.progress=false",
            "train.threads=2",
        ]
    )
    for key, value in settings.items():
        config.set(key.replace("__", "."), value)
    return config
