"""The on-disk label cache (cityseg.labels.cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cityseg.errors import CitysegError
from cityseg.labels.cache import CACHE_FORMAT, LabelCache, default_cache_dir
from cityseg.labels.palette import PALETTE_VERSION, PaletteLabeller


class CountingLabeller(PaletteLabeller):
    calls = 0

    def label(self, mask_rgb, source=""):
        type(self).calls += 1
        return super().label(mask_rgb, source)


def test_cache_reuses_and_recomputes(tmp_path, pair_images):
    path = pair_images.write(tmp_path / "data", 1)[0]
    CountingLabeller.calls = 0
    cache = LabelCache(CountingLabeller(), tmp_path / "cache")

    first = cache.get(path)
    second = cache.get(path)
    assert CountingLabeller.calls == 1 and (first == second).all()

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changed
    cache.get(path)
    assert CountingLabeller.calls == 2

    cache.get(path, mask_side="left")  # another half of the image
    assert CountingLabeller.calls == 3
    other = LabelCache(CountingLabeller(max_distance=20), tmp_path / "cache")  # another parameter
    other.get(path)
    assert CountingLabeller.calls == 4
    photo, labels_again = cache.pair(path)
    assert CountingLabeller.calls == 4 and photo.shape == (64, 64, 3) and (labels_again == first).all()

    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


def test_cache_entries_keep_their_names(tmp_path, pair_images):
    """Existing caches stay valid: the folder and file names depend only on the file and the settings."""
    import hashlib

    assert (CACHE_FORMAT, PALETTE_VERSION) == (1, 1)  # bumping either relabels every cache on purpose
    path = pair_images.write(tmp_path / "data", 1)[0]
    labeller = PaletteLabeller()
    assert labeller.key() == "palette-train19-d45-72b595ec47"
    cache = LabelCache(labeller, tmp_path / "cache")
    stat = path.resolve().stat()
    key = f"1|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{labeller.key()}|right"
    expected = tmp_path / "cache" / "labels" / labeller.key() / f"{hashlib.sha1(key.encode()).hexdigest()[:32]}.npy"
    assert cache.entry(path) == expected
    cache.get(path)
    assert expected.is_file() and np.load(expected).dtype == np.uint8


def test_cache_write_is_atomic(tmp_path, monkeypatch, pair_images):
    path = pair_images.write(tmp_path / "data", 1)[0]
    cache = LabelCache(PaletteLabeller(), tmp_path / "cache")

    def broken_save(file, array):
        Path(file).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(CitysegError, match=r"disk full writing .*\.npy \(needs 4 KB, .* free\)"):
        cache.get(path)
    assert [p for p in cache.folder.iterdir()] == []  # no partial entry, no temp file
    monkeypatch.undo()
    cache.entry(path).write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    assert cache.get(path).shape == (64, 64)


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CitysegError) as error:
        LabelCache(PaletteLabeller(), blocker / "cache")
    assert str(blocker) in str(error.value)


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "cityseg"
    cache = LabelCache(PaletteLabeller(), enabled=False)
    assert cache.folder.parent == tmp_path / "cityseg" / "labels" and not cache.folder.exists()
