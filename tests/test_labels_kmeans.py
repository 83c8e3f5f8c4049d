"""The K-Means labeller (cityseg.labels.kmeans)."""

from __future__ import annotations

import numpy as np
import pytest

from cityseg.classes import LABEL_BY_ID, color_to_label_id
from cityseg.errors import CitysegError
from cityseg.labels.kmeans import KMeansLabeller
from cityseg.labels.palette import PaletteLabeller


def test_kmeans_is_deterministic_and_named(tmp_path, pair_images):
    paths = pair_images.write(tmp_path, 6, size=64)
    first = KMeansLabeller.fit(paths, k=6, seed=1, pixels=6000)
    second = KMeansLabeller.fit(paths, k=6, seed=1, pixels=6000)
    mask = pair_images.decode_mask(paths[0].read_bytes())

    assert np.allclose(first.centers, second.centers)
    assert (first.label(mask) == second.label(mask)).all()
    assert first.class_set.name == "kmeans" and first.class_set.num_classes == 6
    official = {label.name for label in LABEL_BY_ID.values()}
    assert all(name.split(" (")[0] in official for name in first.class_set.names)
    assert len(set(first.class_set.names)) == 6  # repeated names are numbered
    assert first.label(mask).max() < 6


def test_kmeans_names_absorbed_and_save_load(tmp_path, pair_images):
    road, sidewalk, car = (128, 64, 128), (244, 35, 232), (0, 0, 142)
    labeller = KMeansLabeller([road, (130, 60, 130), sidewalk, car])

    assert labeller.class_set.names == ("road", "road (2)", "sidewalk", "car")
    assert labeller.class_set.from_label_ids(np.array([7, 8, 26], np.uint8)).tolist() == [0, 2, 3]
    absorbed = labeller.absorbed()
    assert "sidewalk" in absorbed[2] and "car" in absorbed[3] and "truck" in absorbed[3]
    assert sorted(n for names in absorbed.values() for n in names) == sorted(
        LABEL_BY_ID[i].name for i in color_to_label_id().values()
    )  # every official colour goes to exactly one cluster

    path = labeller.save(tmp_path / "kmeans.json")
    loaded = KMeansLabeller.load(path)
    mask = pair_images.id_colours[np.array([[7, 8], [26, 27]], dtype=np.uint8)]
    assert (loaded.label(mask) == labeller.label(mask)).all() and loaded.key() == labeller.key()
    assert (labeller.label(mask) == [[0, 2], [3, 3]]).all()

    palette_file = PaletteLabeller().save(tmp_path / "palette.json")
    with pytest.raises(CitysegError, match="not kmeans centres"):
        KMeansLabeller.load(palette_file)


def test_kmeans_refuses_impossible_fits(tmp_path, pair_images):
    with pytest.raises(CitysegError, match="empty"):
        KMeansLabeller.fit([], k=3)
    road_only = tmp_path / "road.jpg"
    road_only.write_bytes(pair_images.encode(np.zeros((32, 32, 3), np.uint8), np.full((32, 32), 7, np.uint8)))
    with pytest.raises(CitysegError, match="fewer than k"):
        KMeansLabeller.fit([road_only], k=5, pixels=500)
