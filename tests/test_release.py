"""Reading the official Cityscapes release: layout, truth files, labels, non-square crops, sliding windows, training.

Every test runs on conftest's tiny release (``tiny_release``: 2 train cities, 1 val city, 128x64 photos) or on
frames written with its ``release_frame_writer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.config import AugmentConfig, Config
from cityseg.errors import CitysegError
from cityseg.pairs import discover, is_release_photo, read_release, release_truth_path

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::RuntimeWarning",
    "ignore:.*LeafSpec.*",  # Lightning's own deprecations
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a benchmark shares this machine
    yield
    torch.set_num_threads(threads)


def _photo(root: Path, split: str, city: str, frame: str) -> Path:
    return root / "leftImg8bit" / split / city / f"{city}_{frame}_leftImg8bit.png"


def _ids(photo: Path) -> np.ndarray:
    return np.asarray(Image.open(release_truth_path(photo)))


# ---- layout -----------------------------------------------------------------------------------------


def test_discover_lists_release_photos_in_natural_order_and_skips_unlabelled_test(tiny_release):
    found = discover(tiny_release)
    assert list(found) == ["train", "val"]  # the test split's truth is all void: left out
    assert [p.name for p in found["train"]] == [
        "aachen_000000_000019_leftImg8bit.png",
        "aachen_000000_000100_leftImg8bit.png",
        "bochum_000002_000019_leftImg8bit.png",
        "bochum_000010_000019_leftImg8bit.png",
    ]
    assert [p.name for p in found["val"]] == [
        "frankfurt_000000_000294_leftImg8bit.png",
        "frankfurt_000001_000077_leftImg8bit.png",
    ]
    assert discover(tiny_release, "val") == {"val": found["val"]}
    with pytest.raises(CitysegError, match="test"):
        discover(tiny_release, "test")


def test_discover_keeps_a_labelled_test_split_and_drops_one_without_truth(tmp_path, release_frame_writer):
    rng = np.random.default_rng(1)
    release_frame_writer(tmp_path, "train", "aachen", "000000_000019", rng)
    release_frame_writer(tmp_path, "test", "berlin", "000000_000019", rng)  # labelled: kept
    assert list(discover(tmp_path)) == ["train", "test"]
    release_truth_path(_photo(tmp_path, "test", "berlin", "000000_000019")).unlink()  # no truth: left out
    assert list(discover(tmp_path)) == ["train"]


def test_truth_paths_and_photo_recognition(tiny_release):
    photo = _photo(tiny_release, "val", "frankfurt", "000000_294")
    assert is_release_photo(photo)
    assert release_truth_path(photo) == tiny_release / "gtFine/val/frankfurt/frankfurt_000000_294_gtFine_labelIds.png"
    assert not is_release_photo(tiny_release / "train" / "1.jpg")
    assert not is_release_photo(tiny_release / "frankfurt_000000_294_leftImg8bit.png")  # outside the layout
    with pytest.raises(CitysegError, match="not a Cityscapes release photo"):
        release_truth_path(tiny_release / "1.jpg")


# ---- reading ----------------------------------------------------------------------------------------


def test_read_release_returns_the_photo_and_its_label_ids(tiny_release, release_size, release_label_ids):
    height, width = release_size
    path = _photo(tiny_release, "train", "aachen", "000000_000019")
    photo, ids = read_release(path)
    assert photo.shape == (height, width, 3) and photo.dtype == np.uint8
    assert ids.shape == (height, width) and ids.dtype == np.uint8
    np.testing.assert_array_equal(photo, np.asarray(Image.open(path)))
    np.testing.assert_array_equal(ids, _ids(path))
    assert set(np.unique(ids)) <= set(release_label_ids.tolist()) and len(np.unique(ids)) > 3


def test_missing_or_mismatched_truth_is_a_one_line_error(tmp_path, release_size, release_frame_writer):
    height, width = release_size
    rng = np.random.default_rng(2)
    release_frame_writer(tmp_path, "train", "aachen", "000000_000019", rng)
    photo = _photo(tmp_path, "train", "aachen", "000000_000019")
    truth = release_truth_path(photo)
    Image.fromarray(np.zeros((height // 2, width // 2), np.uint8)).save(truth)
    with pytest.raises(CitysegError, match="64x32 but its photo is 128x64") as info:
        read_release(photo)
    assert "\n" not in str(info.value)
    Image.new("RGB", (width, height)).save(truth)  # a colour image, e.g. *_color.png saved in its place
    with pytest.raises(CitysegError, match="labelIds"):
        read_release(photo)
    truth.unlink()
    with pytest.raises(CitysegError, match=f"truth file {truth} is missing") as info:
        read_release(photo)
    assert "\n" not in str(info.value)


# ---- the data path ----------------------------------------------------------------------------------


def _config(root: Path, tmp: Path, *settings: str) -> Config:
    config = Config()
    config.data.root = str(root)
    config.data.cache_dir = str(tmp / "cache")
    config.train.runs_dir = str(tmp / "runs")
    return config.override(["data.workers=0", "data.val_fraction=0.25", "train.threads=1", *settings])


def test_datasets_serve_release_photos_with_their_true_classes(tiny_release, tmp_path, release_size):
    from cityseg.datasets import PairDataset, prepare_labels
    from cityseg.splits import split_dataset

    height, width = release_size
    config = _config(tiny_release, tmp_path)
    splits, _ = split_dataset(config)
    assert {name: len(paths) for name, paths in splits.items()} == {"train": 3, "val": 1, "test": 2}
    assert splits["test"] == discover(tiny_release)["val"]  # official split: the val folder is the test set
    splits, cache, _ = prepare_labels(config, splits, progress=False)
    train19 = class_set("train19")
    dataset = PairDataset(splits["test"], cache)
    for index, path in enumerate(splits["test"]):
        photo, labels = dataset[index]
        np.testing.assert_array_equal(photo, np.asarray(Image.open(path)))
        np.testing.assert_array_equal(labels, train19.from_label_ids(_ids(path)))
    assert cache.get(splits["train"][0]).shape == (height, width)
    assert not any(cache.folder.iterdir())  # the PNG is the label: nothing cached

    categories = _config(tiny_release, tmp_path, "labels.classes=categories")
    _, category_cache, _ = prepare_labels(categories, splits, progress=False)
    path = splits["val"][0]
    np.testing.assert_array_equal(category_cache.get(path), class_set("categories").from_label_ids(_ids(path)))


def test_kmeans_labelling_is_refused_for_the_release(tiny_release, tmp_path):
    from cityseg.datasets import prepare_labels
    from cityseg.splits import split_dataset

    config = _config(tiny_release, tmp_path, "labels.method=kmeans")
    with pytest.raises(CitysegError, match=r"labels\.method=kmeans .* Cityscapes release"):
        prepare_labels(config, split_dataset(config)[0], progress=False)


def test_training_crops_of_a_non_square_size_keep_the_photo_scale(release_size):
    from cityseg.transforms import eval_transform, train_transform

    height, width = release_size
    photo = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels = np.zeros((height, width), np.uint8)
    augment = AugmentConfig(scale=(1.0, 1.0), crop=(height, width), hflip=False, color_jitter=0.0)
    image, mask = train_transform((height, width), augment, (0.0,) * 3, (1.0,) * 3)(photo, labels)
    assert image.shape == (3, height, width)
    assert int((mask == IGNORE_INDEX).sum()) == 0  # not shrunk and padded: the photo fills the crop at scale 1
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), photo / 255.0, atol=1e-6)

    augment = AugmentConfig(scale=(0.5, 2.0), crop=(height // 2, width // 2))
    image, mask = train_transform((2 * height, 2 * width), augment, (0.5,) * 3, (0.25,) * 3)(photo, labels)
    assert image.shape == (3, height // 2, width // 2) and mask.shape == (height // 2, width // 2)
    image, mask = eval_transform((2 * height, 2 * width), (0.5,) * 3, (0.25,) * 3)(photo, labels)
    assert image.shape == (3, 2 * height, 2 * width) and mask.shape == (height, width)


# ---- sliding windows --------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_on_the_release_with_sliding_window_evaluation(tiny_release, tmp_path, release_size):
    from cityseg.training import train

    height, width = release_size
    config = _config(
        tiny_release,
        tmp_path,
        f"data.size={height},{width}",
        "data.batch_size=2",
        "data.eval_window=32,64",
        "data.eval_overlap=0.5",
        "data.eval_flip=true",
        "augment.crop=32,64",
        "model.encoder=resnet18",
        "model.encoder_depth=3",
        "model.decoder_width=32",
        "optim.schedule=none",
        "train.max_epochs=1",
        "train.progress=false",
    )
    run = train(config)
    metrics = json.loads((run / "metrics.json").read_text())
    confmat = np.asarray(metrics["confmat"], dtype=np.float64)
    assert metrics["images"] == 2 and confmat.shape == (19, 19)
    hits, union = np.diag(confmat), confmat.sum(axis=0) + confmat.sum(axis=1) - np.diag(confmat)
    assert metrics["mIoU"] == pytest.approx(np.mean(hits[union > 0] / union[union > 0]))  # classes seen in either
    assert metrics["aAcc"] == pytest.approx(hits.sum() / confmat.sum())
    # scored at the labels' own size: every labelled pixel of both test images, and none of the void ones
    labelled = sum(
        int((class_set("train19").from_label_ids(_ids(p)) != IGNORE_INDEX).sum()) for p in discover(tiny_release)["val"]
    )
    assert int(np.asarray(metrics["confmat"]).sum()) == labelled
    assert Config.from_yaml(run / "config.yaml").data.eval_window == (32, 64)
    # cityseg evaluate scores the run the way its test did: sliding windows and flip, the same confusion matrix
    from cityseg.evaluation import EvaluateOptions, evaluate_run

    again = evaluate_run(run, options=EvaluateOptions(progress=False), out=tmp_path / "evaluated")
    assert np.array_equal(np.asarray(again["confmat"]), np.asarray(metrics["confmat"]))
    assert again["flip"] is True  # metrics.json says how it was scored
    assert (run / "plots" / "labels.png").is_file()  # the label figure shows the truth ids' colours


def test_label_figure_shows_the_truth_ids_in_their_colours(tiny_release, tmp_path, capsys, release_size):
    from cityseg.cli import main
    from cityseg.labels import LabelCache, PaletteLabeller, label_figure_rows

    height, width = release_size
    photo_path = discover(tiny_release)["train"][0]
    [(photo, mask, labels)] = label_figure_rows([photo_path], LabelCache(PaletteLabeller(), tmp_path / "cache"))
    ids = _ids(photo_path)
    every_id = class_set("labelids")
    assert photo.shape == (height, width, 3) and np.array_equal(mask, every_id.colorize(every_id.from_label_ids(ids)))
    assert np.array_equal(labels, class_set("train19").from_label_ids(ids))

    figure = tmp_path / "labels.png"
    argv = ["label", str(tiny_release), "--cache-dir", str(tmp_path / "c"), "--show", "2", "--out", str(figure)]
    assert main(argv) == 0
    assert figure.is_file() and capsys.readouterr().out.splitlines()[-1] == f"figure: {figure}"
