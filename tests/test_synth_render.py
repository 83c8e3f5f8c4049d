"""Tests for synth rendering: one scene's photo and exact label ids, their colours, determinism, class coverage."""

from __future__ import annotations

import numpy as np
import pytest

from cityseg.classes import NUM_LABEL_IDS, class_set, color_to_label_id
from cityseg.synth import DRAWN_IDS, render_scene


def test_render_scene_returns_photo_and_official_ids():
    photo, ids = render_scene(np.random.default_rng(0))
    assert photo.shape == (256, 256, 3) and photo.dtype == np.uint8
    assert ids.shape == (256, 256) and ids.dtype == np.uint8
    assert set(np.unique(ids).tolist()) <= set(DRAWN_IDS)
    assert ids.max() < NUM_LABEL_IDS

    photo, ids = render_scene(np.random.default_rng(0), size=(64, 96))
    assert photo.shape == (64, 96, 3) and ids.shape == (64, 96)


def test_same_generator_state_same_scene():
    a = render_scene(np.random.default_rng([5, 1]), size=(64, 64))
    b = render_scene(np.random.default_rng([5, 1]), size=(64, 64))
    c = render_scene(np.random.default_rng([5, 2]), size=(64, 64))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_too_small_a_scene_is_refused():
    with pytest.raises(ValueError, match="at least 32x32"):
        render_scene(np.random.default_rng(0), size=(16, 64))


def test_drawn_ids_survive_a_round_trip_through_their_colours():
    # a mask decoded by colour gives back exactly the ids that were drawn
    to_id = color_to_label_id()
    palette = class_set("labelids").palette()
    for label_id in DRAWN_IDS:
        assert to_id[tuple(palette[label_id].tolist())] == label_id


def test_photo_is_textured_not_a_palette_fill():
    photo, ids = render_scene(np.random.default_rng(3))
    mask = class_set("labelids").colorize(ids)
    assert np.abs(photo.astype(int) - mask.astype(int)).mean() > 25  # materials, not the mask colours
    road = photo[ids == 7].astype(float)  # official id 7: road, in every scene
    assert road.shape[0] > 1000
    assert road.std(axis=0).min() > 3  # noise and shading, not a flat fill


def test_at_least_twelve_train_classes_in_100_scenes():
    train19 = class_set("train19")
    seen = set()
    for index in range(100):  # half size: the same scenes at a quarter of the cost
        _, ids = render_scene(np.random.default_rng([0, index]), size=(128, 128))
        seen |= {int(c) for c in train19.from_label_ids(np.unique(ids)) if c < train19.num_classes}
    assert len(seen) >= 12, [train19.names[c] for c in sorted(seen)]
