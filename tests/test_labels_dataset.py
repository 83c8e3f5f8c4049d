"""Labelling a dataset and its report (cityseg.labels.dataset)."""

from __future__ import annotations

import numpy as np
import pytest

from cityseg.errors import CitysegError
from cityseg.labels.dataset import LabellingOptions, label_dataset, label_splits
from cityseg.labels.palette import PaletteLabeller


def test_label_dataset_counts_and_workers(tmp_path, pair_images):
    paths = pair_images.write(tmp_path / "data", 5)
    labeller = PaletteLabeller()
    one = label_dataset(paths, labeller, cache_dir=tmp_path / "c1", workers=1, progress=False)
    two = label_dataset(paths, labeller, cache_dir=tmp_path / "c2", workers=2, progress=False)

    expected = np.zeros(256, dtype=np.int64)
    for path in paths:
        expected += np.bincount(labeller.label(pair_images.decode_mask(path.read_bytes())).ravel(), minlength=256)
    assert one.count == 5 and one.skipped == [] and one.sets == {}
    assert (one.pixel_counts == expected[:19]).all() and one.ignored_pixels == expected[19:].sum()
    assert (two.pixel_counts == one.pixel_counts).all() and (two.image_counts == one.image_counts).all()
    assert one.total_pixels == 5 * 64 * 64 and "road" in one.table()


def test_label_dataset_bad_files(tmp_path, pair_images):
    paths = pair_images.write(tmp_path / "data", 3)
    bad = tmp_path / "data" / "4.jpg"
    bad.write_bytes(b"")
    with pytest.raises(CitysegError, match=r"4\.jpg"):
        label_dataset([*paths, bad], PaletteLabeller(), use_cache=False, progress=False)
    report = label_dataset([*paths, bad], PaletteLabeller(), use_cache=False, skip_bad=True, progress=False, workers=2)
    assert report.count == 3 and [p for p, _ in report.skipped] == [bad] and "empty" in report.skipped[0][1]


def test_label_splits_counts_each_set(tmp_path, pair_images):
    """Per-set class counts (class weights need the train set's) equal labelling each set on its own."""
    splits = {
        "train": pair_images.write(tmp_path / "train", 4, seed=1),
        "val": pair_images.write(tmp_path / "val", 2, seed=2),
        "test": [],
    }
    bad = tmp_path / "val" / "9.jpg"
    bad.write_bytes(b"")
    splits["val"].append(bad)
    labeller = PaletteLabeller()
    report = label_splits(splits, labeller, LabellingOptions(use_cache=False, skip_bad=True, progress=False, workers=2))

    assert list(report.sets) == ["train", "val", "test"]
    for name, paths in splits.items():
        alone = label_dataset(paths, labeller, use_cache=False, skip_bad=True, progress=False)
        part = report.sets[name]
        assert np.array_equal(part.pixel_counts, alone.pixel_counts) and part.pixel_counts.dtype == np.int64
        assert np.array_equal(part.image_counts, alone.image_counts)
        assert (part.count, part.ignored_pixels, part.skipped) == (alone.count, alone.ignored_pixels, alone.skipped)
    assert report.sets["train"].count == 4 and report.sets["test"].count == 0
    assert not np.array_equal(report.sets["train"].pixel_counts, report.sets["val"].pixel_counts)
    assert np.array_equal(report.pixel_counts, sum(part.pixel_counts for part in report.sets.values()))
    assert report.count == 6 and [p for p, _ in report.skipped] == [bad] == [p for p, _ in report.sets["val"].skipped]


def test_interrupted_labelling_resumes_with_the_missing_images(tmp_path):
    """A labelling run stopped part-way left whole cache files (atomic writes); the next run computes only the rest."""
    from cityseg.pairs import list_images
    from cityseg.synth import write_scenes

    write_scenes(tmp_path / "data", count=8, seed=5)
    paths = list_images(tmp_path / "data" / "train")
    labeller = PaletteLabeller()
    cache = tmp_path / "cache"
    label_dataset(paths[:3], labeller, cache_dir=cache, workers=1, progress=False)  # the interrupted run
    kept = {entry: entry.stat().st_mtime_ns for entry in cache.rglob("*.npy")}
    assert len(kept) == 3
    report = label_dataset(paths, labeller, cache_dir=cache, workers=2, progress=False)
    assert (report.count, report.cached) == (8, 3)
    assert {entry: entry.stat().st_mtime_ns for entry in kept} == kept  # the earlier labels were not redone
    assert len(list(cache.rglob("*.npy"))) == 8
    again = label_dataset(paths, labeller, cache_dir=cache, workers=2, progress=False)
    assert again.cached == 8 and np.array_equal(again.pixel_counts, report.pixel_counts)
