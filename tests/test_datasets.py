"""Splits (official and seed, seeded, saved), streamed pair datasets and the Lightning data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cityseg.config import Config
from cityseg.datasets import (
    PairDataset,
    SegDataModule,
    load_splits,
    make_splits,
    prepare_labels,
    save_splits,
    split_dataset,
)
from cityseg.errors import CitysegError


def fake_dataset(root: Path, train: int, val: int = 0) -> Path:
    """Empty files named like pair images: splitting only lists them."""
    for folder, count in (("train", train), ("val", val)):
        if count:
            (root / folder).mkdir(parents=True)
            for i in range(1, count + 1):
                (root / folder / f"{i}.jpg").touch()
    return root


def config_for(root: Path, **settings) -> Config:
    config = Config()
    config.data.root = str(root)
    for key, value in settings.items():
        config.set(key.replace("__", "."), value)
    return config


def names(paths) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in paths}


def test_official_split_holds_out_validation_from_train_and_tests_on_val(tmp_path):
    root = fake_dataset(tmp_path, train=50, val=12)
    splits, note = split_dataset(config_for(root, data__val_fraction=0.2))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [40, 10, 12]
    assert names(splits["train"]) | names(splits["val"]) == {f"train/{i}.jpg" for i in range(1, 51)}
    assert not names(splits["train"]) & names(splits["val"])
    assert names(splits["test"]) == {f"val/{i}.jpg" for i in range(1, 13)}
    assert "val folder" in note


def test_splits_are_seeded(tmp_path):
    root = fake_dataset(tmp_path, train=40, val=5)
    first = make_splits(config_for(root))
    assert make_splits(config_for(root)) == first
    other = make_splits(config_for(root, train__seed=1))
    assert names(other["val"]) != names(first["val"])


def test_official_split_without_val_folder_holds_out_a_test_share(tmp_path):
    root = fake_dataset(tmp_path, train=100)
    splits, note = split_dataset(config_for(root, data__val_fraction=0.1, data__test_fraction=0.2))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [70, 10, 20]
    assert "no val folder" in note and "test" in note
    every = names(splits["train"]) | names(splits["val"]) | names(splits["test"])
    assert len(every) == 100


def test_seed_split_pools_everything_64_16_20(tmp_path):
    root = fake_dataset(tmp_path, train=80, val=20)
    splits, note = split_dataset(config_for(root, data__split="seed"))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [64, 16, 20]
    pooled = names(splits["train"]) | names(splits["val"]) | names(splits["test"])
    assert len(pooled) == 100
    assert any(n.startswith("val/") for n in names(splits["train"]))  # the val folder is pooled in
    assert "64/16/20" in note


def test_plain_folder_and_tiny_datasets(tmp_path):
    for i in range(1, 4):
        (tmp_path / f"{i}.jpg").touch()
    splits = make_splits(config_for(tmp_path))
    assert all(len(splits[k]) == 1 for k in ("train", "val", "test"))  # every split keeps one image
    (tmp_path / "3.jpg").unlink()
    with pytest.raises(CitysegError, match="at least 3"):
        make_splits(config_for(tmp_path))


def test_limit_takes_a_seeded_subset_of_each_folder(tmp_path):
    root = fake_dataset(tmp_path, train=50, val=20)
    splits = make_splits(config_for(root, data__limit=10))
    assert len(splits["train"]) + len(splits["val"]) == 10
    assert len(splits["test"]) == 10


def test_bad_split_settings(tmp_path):
    root = fake_dataset(tmp_path, train=10)
    with pytest.raises(CitysegError, match="seed_fractions"):
        make_splits(config_for(root, data__split="seed", data__seed_fractions="0.5,0.3,0.3"))
    with pytest.raises(CitysegError, match="no dataset"):
        make_splits(Config())
    with pytest.raises(CitysegError, match="does not exist"):
        make_splits(config_for(tmp_path / "missing"))


def test_saved_splits_are_relative_and_resolve_against_a_moved_dataset(tmp_path):
    root = fake_dataset(tmp_path / "data", train=20, val=4)
    splits, note = split_dataset(config_for(root))
    save_splits(splits, tmp_path / "splits.json", root, note)
    text = (tmp_path / "splits.json").read_text()
    assert '"train/' in text and str(tmp_path / "data" / "train") not in text.split('"train"')[1]
    assert load_splits(tmp_path / "splits.json") == {k: [p.resolve() for p in v] for k, v in splits.items()}
    moved = load_splits(tmp_path / "splits.json", root="/elsewhere")
    assert moved["test"][0] == Path("/elsewhere/val/1.jpg")


# ---- real images: a few generated scenes -----------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from cityseg.synth import write_scenes

    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, count=8, seed=3, val_fraction=0.25)
    return root


@pytest.fixture(scope="module")
def prepared(scenes, tmp_path_factory):
    config = config_for(scenes, data__size="64,64", data__batch_size=2, data__workers=0)
    config.data.cache_dir = str(tmp_path_factory.mktemp("cache"))
    config.train.progress = False
    splits = make_splits(config)
    splits, cache = prepare_labels(config, splits, progress=False)
    return config, splits, cache


def test_labels_are_cached_up_front_and_match_the_labeller(prepared):
    _, splits, cache = prepared
    from cityseg.pairs import read_pair

    path = splits["train"][0]
    assert cache.entry(path).exists()  # labelled before any dataset was read
    _, mask = read_pair(path)
    assert np.array_equal(cache.get(path), cache.labeller.label(mask))


def test_pair_dataset_streams_photos_and_cached_labels(prepared):
    _, splits, cache = prepared
    raw = PairDataset(splits["train"], cache)
    assert not any(isinstance(v, np.ndarray | torch.Tensor) for v in vars(raw).values())  # paths only
    photo, labels = raw[0]
    assert photo.shape == (256, 256, 3) and photo.dtype == np.uint8
    assert labels.shape == (256, 256) and labels.dtype == np.uint8
    assert np.array_equal(labels, cache.get(splits["train"][0]))


def test_data_module_batches(prepared):
    config, splits, cache = prepared
    module = SegDataModule(config, splits, cache)
    module.setup("fit")
    images, masks = next(iter(module.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert masks.shape == (2, 64, 64) and masks.dtype == torch.int64
    images, masks = next(iter(module.val_dataloader()))
    assert images.shape[-2:] == (64, 64)
    assert masks.shape[-2:] == (256, 256)  # evaluation scores the labels at their own resolution
    assert len(module.test_dataloader().dataset) == 2


def test_data_module_prepares_itself_from_the_config(prepared):
    config, splits, _ = prepared
    module = SegDataModule(config)
    module.prepare_data()
    module.setup("fit")
    assert module.splits == splits
    assert len(module.train_dataloader().dataset) == len(splits["train"])


def test_skip_bad_drops_unreadable_images(scenes, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(scenes, root)
    config = config_for(root, data__workers=0)
    config.data.cache_dir = str(tmp_path / "cache")
    splits = make_splits(config)
    bad = splits["train"][1]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(CitysegError, match=bad.name):
        prepare_labels(config, splits, progress=False)
    config.data.skip_bad = True
    kept, _ = prepare_labels(config, splits, progress=False)
    assert kept["train"] == [p for p in splits["train"] if p != bad]
    assert kept["val"] == splits["val"] and kept["test"] == splits["test"]
