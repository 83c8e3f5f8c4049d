"""Hub models through huggingface_hub's real download path, offline, from a cache the test builds in its layout."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cityseg.errors import CitysegError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SMP_EVAL = {  # what albumentations' Compose.save_pretrained writes for smp-hub's checkpoints
    "__version__": "1.4.24",
    "transform": {
        "__class_fullname__": "Compose",
        "p": 1.0,
        "transforms": [
            {"__class_fullname__": "Resize", "height": 64, "width": 96, "interpolation": 1, "p": 1},
            {
                "__class_fullname__": "Normalize",
                "mean": [123.675, 116.28, 103.53],
                "std": [58.395, 57.12, 57.375],
                "max_pixel_value": 1.0,
                "p": 1,
            },
        ],
    },
}


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main", commit: str = COMMIT):
    """Put ``files`` into the Hub cache as huggingface_hub lays it out: blobs, a snapshot of links, a ref."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hub cache, offline: huggingface_hub reads its settings at import, so they are patched there too."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="module")
def smp_checkpoint(tmp_path_factory, tiny_test_model):
    """A tiny smp checkpoint as smp-hub publishes them: save_pretrained's files and the albumentations config."""
    import torch

    from cityseg.models import create_model

    def make(num_classes: int = 19) -> dict[str, bytes]:
        torch.manual_seed(num_classes)
        folder = tmp_path_factory.mktemp("smp-checkpoint")
        create_model(num_classes=num_classes, **tiny_test_model).eval().save_pretrained(folder)
        (folder / "albumentations_config_eval.json").write_text(json.dumps(SMP_EVAL))
        return folder_files(folder)

    return make


def test_a_cityseg_model_on_the_hub_loads_offline_as_the_local_folder(hub_cache, tiny_model_dir, tiny_segmenter):
    from cityseg.engine import Segmenter

    cache_repo(hub_cache, "someone/tiny-streets", folder_files(tiny_model_dir))
    segmenter = Segmenter.from_pretrained("someone/tiny-streets", backend="torch")
    assert segmenter.model_dir.parent.name == "snapshots" and segmenter.info.names == tiny_segmenter.info.names
    photo = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert np.array_equal(segmenter.predict(photo), tiny_segmenter.predict(photo))


def test_a_revision_after_the_at_sign_picks_that_ref(hub_cache, tiny_model_dir, tiny_model_saver, tmp_path):
    from cityseg.model_sources import locate_model

    other = tiny_model_saver(tmp_path / "other", classes="categories")
    cache_repo(hub_cache, "someone/tiny", folder_files(tiny_model_dir))
    cache_repo(hub_cache, "someone/tiny", folder_files(other), revision="v2", commit="f" * 40)
    assert locate_model("someone/tiny").folder.name == COMMIT
    source = locate_model("someone/tiny@v2")
    assert (source.kind, source.folder.name, source.read_only) == ("hub", "f" * 40, True)
    assert json.loads((source.folder / "cityseg.json").read_text())["class_set"] == "categories"


def test_an_smp_cityscapes_checkpoint_reads_as_train19_with_its_own_preprocessing(hub_cache, smp_checkpoint):
    import torch

    from cityseg.engine import Segmenter, preprocess
    from cityseg.models import load_model

    cache_repo(hub_cache, "smp-hub/tiny-512x512-city-160k", smp_checkpoint(19))
    segmenter = Segmenter.from_pretrained("smp-hub/tiny-512x512-city-160k", backend="torch")
    info = segmenter.info
    assert info.class_set_name == "train19" and info.input_size == (64, 96)  # the Resize, not the name's 512x512
    assert np.allclose(info.mean, (0.485, 0.456, 0.406)) and np.allclose(info.std, (0.229, 0.224, 0.225))
    assert info.encoder_weights == f"smp-hub/tiny-512x512-city-160k@{COMMIT}"
    # cityseg's info lives in its own cache folder, beside links to the Hub's files; the Hub's cache is untouched
    assert segmenter.model_dir.is_relative_to(Path(os.environ["XDG_CACHE_HOME"]) / "cityseg")
    assert not any(p.name == "cityseg.json" for p in hub_cache.rglob("*"))
    # the checkpoint's own network gives the same logits on the same input
    net, _ = load_model(segmenter.model_dir)
    photo = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    batch = preprocess(photo, info)[None]
    with torch.inference_mode():
        expected = net(torch.from_numpy(batch)).numpy()
    assert np.allclose(segmenter.logits(batch), expected, atol=1e-5)


def test_an_smp_checkpoint_without_class_names_needs_classes(hub_cache, smp_checkpoint):
    from cityseg.model_sources import locate_model

    cache_repo(hub_cache, "someone/roads7", smp_checkpoint(7))
    with pytest.raises(CitysegError, match=r"7 classes that does not name them; pass --classes"):
        locate_model("someone/roads7")
    with pytest.raises(CitysegError, match=r"--classes train19 has 19 classes but Hub model someone/roads7 outputs 7"):
        locate_model("someone/roads7", classes="train19")
    folder = locate_model("someone/roads7", classes="categories").folder
    assert json.loads((folder / "cityseg.json").read_text())["class_set"] == "categories"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"pytorch_model.bin": b"pickle", "config.json": b"{}"}, r"holds pickled weights only .*never runs"),
        ({"README.md": b"# data", "data.csv": b"a,b"}, r"is not a segmentation model .*holds README.md, data.csv"),
    ],
)
def test_repositories_that_are_no_safetensors_model_are_refused(hub_cache, files, message):
    from cityseg.model_sources import locate_model

    cache_repo(hub_cache, "someone/odd", files)
    with pytest.raises(CitysegError, match=message):
        locate_model("someone/odd")


def test_weights_that_do_not_fit_their_config_are_one_line(hub_cache, smp_checkpoint):
    from cityseg.engine import Segmenter

    files = smp_checkpoint(19)
    config = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**config, "decoder_channels": [16, 16, 8]}).encode()
    cache_repo(hub_cache, "smp-hub/broken-city", files)
    with pytest.raises(CitysegError, match=r"model.safetensors does not match .*config.json"):
        Segmenter.from_pretrained("smp-hub/broken-city", backend="torch")


def test_a_repository_not_in_the_cache_offline_says_how_to_fetch_it(hub_cache):
    from cityseg.model_sources import locate_model

    with pytest.raises(CitysegError) as caught:
        locate_model("someone/never-downloaded")
    message = str(caught.value)
    assert "not in the local cache" in message and "hf download someone/never-downloaded" in message
    assert "\n" not in message and not any(hub_cache.iterdir())  # one line, nothing half-written


def test_the_command_line_runs_a_hub_model_offline_and_lists_it(hub_cache, tiny_model_dir, tmp_path):
    from PIL import Image

    cache_repo(hub_cache, "someone/tiny-streets", folder_files(tiny_model_dir))
    photo = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(photo)
    command = [sys.executable, "-m", "cityseg.cli"]
    done = subprocess.run(
        [*command, "predict", "someone/tiny-streets", str(photo), "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "street_trainIds.png").is_file() and (tmp_path / "out" / "street_overlay.jpg").is_file()
    missing = subprocess.run([*command, "predict", "someone/absent", str(photo)], capture_output=True, text=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "hf download someone/absent" in missing.stderr
    listed = subprocess.run([*command, "models", "--json"], capture_output=True, text=True, check=True)
    names = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    assert names["someone/tiny-streets@main"]["source"] == "hub"
    assert names["someone/tiny-streets@main"]["classes"] == "train19 (19)"


def test_names_that_are_not_hub_ids_stay_paths():
    from cityseg.model_sources import parse_hub_id

    assert parse_hub_id("owner/name") == ("owner/name", None)
    assert parse_hub_id("owner/name@refs/pr/1") == ("owner/name", "refs/pr/1")
    for path in ("runs/latest/model", "./owner/name", "/abs/path", "name", "../x/y", "owner/name/"):
        assert parse_hub_id(path) is None, path
