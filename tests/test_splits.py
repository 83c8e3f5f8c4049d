"""Splits: official, blocks (whole cities held out) and seed; seeded, limited, saved and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.splits import CITYSCAPES_TRAIN_CITIES, file_blocks, load_splits, save_splits, split_dataset


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
    first = split_dataset(config_for(root))[0]
    assert split_dataset(config_for(root))[0] == first
    other = split_dataset(config_for(root, train__seed=1))[0]
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
    splits = split_dataset(config_for(tmp_path))[0]
    assert all(len(splits[k]) == 1 for k in ("train", "val", "test"))  # every split keeps one image
    (tmp_path / "3.jpg").unlink()
    with pytest.raises(CitysegError, match="at least 3"):
        split_dataset(config_for(tmp_path))[0]


def test_limit_takes_a_seeded_subset_of_each_folder(tmp_path):
    root = fake_dataset(tmp_path, train=50, val=20)
    splits = split_dataset(config_for(root, data__limit=10))[0]
    assert len(splits["train"]) + len(splits["val"]) == 10
    assert len(splits["test"]) == 10


def test_bad_split_settings(tmp_path):
    root = fake_dataset(tmp_path, train=10)
    with pytest.raises(CitysegError, match="seed_fractions"):
        split_dataset(config_for(root, data__split="seed", data__seed_fractions="0.5,0.3,0.3"))[0]
    with pytest.raises(CitysegError, match="no dataset"):
        split_dataset(Config())[0]
    with pytest.raises(CitysegError, match="does not exist"):
        split_dataset(config_for(tmp_path / "missing"))[0]


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


def test_blocks_split_holds_out_whole_cities_of_the_release_order(tmp_path):
    root = fake_dataset(tmp_path / "pairs", train=2975)
    config = config_for(root, data__split="blocks", data__val_fraction=0.05, data__test_fraction=0.15)
    splits, note = split_dataset(config)
    assert sum(len(paths) for paths in splits.values()) == 2975
    city_of = {}
    start = 1
    for city, count in CITYSCAPES_TRAIN_CITIES:
        city_of.update({f"{i}.jpg": city for i in range(start, start + count)})
        start += count
    cities = {name: {city_of[p.name] for p in paths} for name, paths in splits.items()}
    assert not cities["test"] & cities["train"] and not cities["val"] & cities["train"]
    assert not cities["val"] & cities["test"]
    for name in ("val", "test"):  # every held-out city is there whole
        counts = dict(CITYSCAPES_TRAIN_CITIES)
        assert len(splits[name]) == sum(counts[c] for c in cities[name])
    assert 0.5 * 446 <= len(splits["test"]) <= 1.5 * 446 and 0.5 * 149 <= len(splits["val"]) <= 1.5 * 149
    assert "cities" in note and all(c in note for c in cities["test"])
    again, _ = split_dataset(config)
    assert again == splits
    other, _ = split_dataset(
        config_for(root, data__split="blocks", data__val_fraction=0.05, data__test_fraction=0.15, train__seed=3)
    )
    assert other["test"] != splits["test"]  # seeded: another seed holds out other cities


def test_blocks_split_of_other_folders_uses_runs_of_the_file_order(tmp_path):
    root = fake_dataset(tmp_path / "pairs", train=300, val=20)
    splits, note = split_dataset(config_for(root, data__split="blocks", data__block_size=50, data__val_fraction=0.2))
    assert len(splits["val"]) % 50 == 0 and len(splits["val"]) > 0  # whole blocks of 50
    assert {p.name for p in splits["test"]} == {f"{i}.jpg" for i in range(1, 21)}  # the val folder: the test set
    numbers = sorted(int(p.stem) for p in splits["val"])
    blocks = {(n - 1) // 50 for n in numbers}
    assert len(numbers) == 50 * len(blocks)  # each held-out block is there whole
    assert "runs of 50 images" in note


def test_file_blocks_follow_city_folders(tmp_path):
    paths = [tmp_path / city / f"{city}_{i}.png" for city in ("bonn", "aachen") for i in range(3)]
    blocks, how = file_blocks(paths, block_size=100)
    assert [name for name, _ in blocks] == ["aachen", "bonn"] and how == "city folders"
    assert all(len(items) == 3 for _, items in blocks)


def test_blocks_split_needs_enough_blocks(tmp_path):
    root = fake_dataset(tmp_path / "pairs", train=100)
    with pytest.raises(CitysegError, match="too few to hold some out"):
        split_dataset(config_for(root, data__split="blocks", data__block_size=60))
