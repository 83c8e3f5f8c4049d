"""Choosing, saving and rebuilding labellers (cityseg.labels.registry)."""

from __future__ import annotations

import pytest

from cityseg.config import LabelConfig
from cityseg.errors import CitysegError
from cityseg.labels.kmeans import KMeansLabeller
from cityseg.labels.palette import PaletteLabeller
from cityseg.labels.registry import labeller_from_dict, load_labeller, make_labeller


def test_make_labeller_reuses_fitted_kmeans(tmp_path, monkeypatch, pair_images):
    paths = pair_images.write(tmp_path / "data", 4, size=32)
    config = LabelConfig(method="kmeans", k=4, kmeans_pixels=2000)
    first = make_labeller(config, paths, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(KMeansLabeller, "fit", lambda *a, **k: pytest.fail("refitted"))
    again = make_labeller(config, paths, cache_dir=tmp_path / "cache")
    assert again.key() == first.key()
    with pytest.raises(CitysegError, match="unknown labelling method"):
        make_labeller(LabelConfig(method="magic"), paths)


def test_palette_labeller_round_trips_through_json(tmp_path):
    labeller = PaletteLabeller("categories", max_distance=20)
    again = load_labeller(labeller.save(tmp_path / "palette.json"))
    assert again.key() == labeller.key() and again.class_set.name == "categories"
    assert labeller_from_dict(labeller.to_dict()).key() == labeller.key()
    assert PaletteLabeller(max_distance=21).key() != labeller.key()


def test_bad_labeller_files_are_one_line_errors(tmp_path):
    with pytest.raises(CitysegError, match="unknown labelling method 'magic'"):
        labeller_from_dict({"method": "magic"})
    with pytest.raises(CitysegError, match="bad palette labeller settings"):
        labeller_from_dict({"method": "palette", "colour": "blue"})
    broken = tmp_path / "broken.json"
    broken.write_text('{"method": "kmeans"}')
    with pytest.raises(CitysegError, match="is corrupt"):
        load_labeller(broken)
    with pytest.raises(CitysegError, match="cannot read labeller file"):
        load_labeller(tmp_path / "missing.json")
