"""Streamed pair datasets, labels prepared up front, and the Lightning data module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.datasets import PairDataset, prepare_labels
from cityseg.errors import CitysegError
from cityseg.splits import split_dataset
from cityseg.training.data import SegDataModule


def config_for(root, **settings) -> Config:
    config = Config()
    config.data.root = str(root)
    for key, value in settings.items():
        config.set(key.replace("__", "."), value)
    return config


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
    splits = split_dataset(config)[0]
    splits, cache, _ = prepare_labels(config, splits, progress=False)
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
    splits = split_dataset(config)[0]
    bad = splits["train"][1]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(CitysegError, match=bad.name):
        prepare_labels(config, splits, progress=False)
    config.data.skip_bad = True
    kept, _, _ = prepare_labels(config, splits, progress=False)
    assert kept["train"] == [p for p in splits["train"] if p != bad]
    assert kept["val"] == splits["val"] and kept["test"] == splits["test"]


# ---- rare-class sampling ----------------------------------------------------------------------------


def test_rare_class_sampling_draws_the_images_that_hold_rare_classes():
    from cityseg.datasets import RareClassSampler

    # class 0 is everywhere; class 1 fills 10% of image 1; class 2 5% of image 2 and a speck (blend) of image 3
    pixels = np.array([[1000, 0, 0], [900, 100, 0], [950, 0, 50], [9999, 0, 1]])
    sampler = RareClassSampler(pixels, temperature=0.01, num_samples=20_000, seed=0)
    shares = pixels.sum(0) / pixels.sum()
    expected = np.exp((1 - shares) / 0.01 - ((1 - shares) / 0.01).max())
    np.testing.assert_allclose(sampler.class_probability, expected / expected.sum())
    assert sampler.class_probability[0] < 1e-9  # the common class is (almost) never drawn
    draws = np.bincount(list(sampler), minlength=4) / 20_000
    assert draws[0] < 0.001 and draws[3] < 0.001  # the speck of class 2 does not make image 3 rare
    np.testing.assert_allclose(draws[1:3], sampler.class_probability[1:3], atol=0.015)
    assert len(list(sampler)) == len(sampler) == 20_000
    assert list(sampler) != list(sampler)  # each epoch draws anew


def test_class_pixels_counts_each_image_from_the_label_cache(prepared):
    from cityseg.datasets import class_pixels

    _, splits, cache = prepared
    dataset = PairDataset(splits["train"], cache)
    counts = class_pixels(dataset, 19)
    for index, path in enumerate(dataset.paths):
        labels = cache.get(path)
        assert counts[index].sum() == (labels != 255).sum()
        assert counts[index][0] == (labels == 0).sum()


# ---- sharding across processes ----------------------------------------------------------------------


def test_shard_sampler_splits_without_repeats():
    from cityseg.datasets import ShardSampler

    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert [len(ShardSampler(7, rank, 3)) for rank in range(3)] == [3, 2, 2]
    padded = [list(ShardSampler(7, rank, 3, pad=True)) for rank in range(3)]
    assert padded == [[0, 3, 6], [1, 4, 7], [2, 5, 7]]  # 7 = len: the ignored padding item


def test_padding_item_is_scored_nowhere(prepared):
    _, splits, cache = prepared
    dataset = PairDataset(splits["val"], cache)
    photo, labels = dataset[len(dataset)]
    assert photo.shape == dataset[0][0].shape and (labels == IGNORE_INDEX).all()
    assert (dataset[0][1] != IGNORE_INDEX).any()
