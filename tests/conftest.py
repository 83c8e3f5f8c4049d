"""Shared fixtures: a tiny model folder, a tiny pair dataset, a tiny Cityscapes release layout, every known
layout of photos and label images (KITTI, BDD100K, ACDC, Dark Zurich, images/ + labels/) in miniature, the
generated scenes and tiny training config of the training tests, and the pair images of the label tests.

Each dataset is built once per session in a temporary folder; tests that change one copy it first. Tests reach
the builders behind them through fixtures too, never by importing this file: ``tiny_model_saver`` saves a
variant of the tiny model, ``release_frame_writer`` writes one release photo, ``layout_truth`` gives a layout
scene's exact label ids, ``tiny_config_for`` builds a training config, ``pair_images`` draws and writes pair
images, ``benchmark_loader`` loads a script of benchmarks/.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (the fuzz targets, the API against its schema): the same inputs on every run, and no example
# database written into the repository; the time limit per input is the tests' own (a deadline would flake).
settings.register_profile(
    "cityseg", derandomize=True, database=None, deadline=None, print_blob=False, suppress_health_check=list(HealthCheck)
)
settings.load_profile("cityseg")

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
    from cityseg.synth import write_layout

    written = {}
    for name, layout in LAYOUTS.items():
        val = 0.0 if layout.split_folders == "never" and not layout.image_sets else LAYOUT_VAL
        size = LAYOUT_SIZES.get(name, (64, 128))
        write_layout(root / name, name, count=LAYOUT_SCENES, seed=seed, val_fraction=val, size=size)
        written[name] = root / name
    return written


def scene_label_ids(layout: str, split: str, number: int, seed: int = LAYOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(photo, exact label ids) of scene ``number`` of ``split`` in :func:`write_layouts`' ``layout``."""
    from cityseg.layouts import LAYOUTS
    from cityseg.synth import render_scene

    n_val = 0 if layout == "kitti" else round(LAYOUT_SCENES * LAYOUT_VAL)
    pooled = bool(LAYOUTS[layout].image_sets)  # one photos folder (VOC): scenes are numbered across splits
    index = number + (LAYOUT_SCENES - n_val if split == "val" and not pooled else 0)
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


@contextlib.contextmanager
def running_server(segmenter, settings=None) -> Iterator[str]:
    """The real server (uvicorn, a free port on 127.0.0.1) in a thread, with ``settings``; yields its URL."""
    from cityseg.serve import make_server

    server = make_server(segmenter, "127.0.0.1", 0, settings, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield server.url
    finally:
        server.stop()
        thread.join(30)


@pytest.fixture(scope="session")
def live_server():
    """:func:`running_server`: ``with live_server(segmenter, settings) as url:`` serves on loopback meanwhile."""
    return running_server


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


# ---- the builders behind them, for tests that need a variant -------------------------------------------


@pytest.fixture(scope="session")
def tiny_test_model() -> dict:
    """The tiny network's settings: ``create_model(num_classes=..., **tiny_test_model)`` (64x64 inputs)."""
    return dict(TINY_TEST_MODEL)


@pytest.fixture(scope="session")
def tiny_model_saver():
    """:func:`save_tiny_model`: ``tiny_model_saver(folder, classes="categories")`` saves a variant of the tiny model."""
    return save_tiny_model


@pytest.fixture(scope="session")
def release_frame_writer():
    """:func:`write_release_frame`: ``release_frame_writer(root, split, city, frame, rng)`` writes one release photo."""
    return write_release_frame


@pytest.fixture(scope="session")
def release_size() -> tuple[int, int]:
    """(H, W) of the tiny release's photos and truth."""
    return RELEASE_SIZE


@pytest.fixture(scope="session")
def release_label_ids() -> np.ndarray:
    """The label ids the tiny release's truth is drawn from, void ones among them."""
    return RELEASE_LABEL_IDS.copy()


@pytest.fixture(scope="session")
def layout_scene_count() -> int:
    """Scenes in each layout of :func:`write_layouts`."""
    return LAYOUT_SCENES


@pytest.fixture(scope="session")
def layout_truth():
    """:func:`scene_label_ids`: ``layout_truth(layout, split, number)`` is (photo, exact label ids) of a scene."""
    return scene_label_ids


@pytest.fixture(scope="session")
def benchmark_loader():
    """:func:`load_benchmark`: ``benchmark_loader("video")`` is benchmarks/video.py as a module."""
    return load_benchmark


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


@pytest.fixture(scope="session")
def history_reader():
    """:func:`read_history`: ``history_reader(run)`` is a run's history.csv, one dict per epoch."""
    return read_history


@pytest.fixture(scope="session")
def tiny_config_for():
    """:func:`tiny_config`: ``tiny_config_for(root, runs, train__max_epochs=3)`` is a config that trains in seconds."""
    return tiny_config


# ---- pair images for the label tests --------------------------------------------------------------------

REAL_PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cityscapes_pairs" / "train"


class PairImages:
    """Pair images as the label tests need them: drawn scenes in the official colours, JPEG-encoded like the real
    pairs (quality 95, 4:2:0 chroma)."""

    def __init__(self):
        from cityseg.classes import LABEL_BY_ID, color_to_label_id

        self.id_colours = np.zeros((256, 3), dtype=np.uint8)  # label id -> its official colour
        for label_id in range(34):
            self.id_colours[label_id] = LABEL_BY_ID[label_id].color
        self.drawable_ids = sorted(set(color_to_label_id().values()))  # ids whose colour maps back to them

    def encode(self, photo: np.ndarray, label_ids: np.ndarray) -> bytes:
        """A pair JPEG as the real ones are stored: the photo, then the label ids in their colours."""
        import io

        from PIL import Image

        pair = np.concatenate([photo, self.id_colours[label_ids]], axis=1)
        buffer = io.BytesIO()
        Image.fromarray(pair).save(buffer, "JPEG", quality=95, subsampling=2)
        return buffer.getvalue()

    @staticmethod
    def decode_mask(data: bytes) -> np.ndarray:
        """The colour mask (right half) of a pair JPEG's bytes."""
        import io

        from PIL import Image

        pair = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        return np.ascontiguousarray(pair[:, pair.shape[1] // 2 :])

    def draw(self, rng: np.random.Generator, size: int = 128) -> np.ndarray:
        """Label ids of a scene of many shapes and edges: sky, road, then 25 random shapes of random classes."""
        from PIL import Image, ImageDraw

        image = Image.new("L", (size, size), 23)
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, size // 2, size, size], fill=7)
        for _ in range(25):
            label_id = int(rng.choice(self.drawable_ids))
            x, y = rng.integers(0, size - 8, 2)
            w, h = rng.integers(6, size // 3, 2)
            if rng.random() < 0.5:
                draw.rectangle([x, y, x + w, y + h], fill=label_id)
            else:
                draw.ellipse([x, y, x + w, y + h], fill=label_id)
        return np.asarray(image)

    def write(self, folder: Path, count: int, seed: int = 0, size: int = 64) -> list[Path]:
        """``count`` pair images 1.jpg .. in ``folder``: random photo, drawn scene mask."""
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(1, count + 1):
            ids = self.draw(rng, size)
            photo = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            path = folder / f"{i}.jpg"
            path.write_bytes(self.encode(photo, ids))
            paths.append(path)
        return paths


@pytest.fixture(scope="session")
def pair_images() -> PairImages:
    """:class:`PairImages`: ``pair_images.write(folder, 3)`` writes 3 pair JPEGs; ``.encode``, ``.draw`` ..."""
    return PairImages()


@pytest.fixture(scope="session")
def real_pairs() -> Path:
    """The real Cityscapes pairs' train folder (../shared/data/cityscapes_pairs); the test is skipped without it."""
    if not REAL_PAIRS.is_dir():
        pytest.skip("real Cityscapes pairs not found at ../shared/data/cityscapes_pairs")
    return REAL_PAIRS
