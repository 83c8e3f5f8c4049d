"""The on-disk label cache: each pair image's labels computed once and kept as an ``.npy`` file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.labels.base import Labeller, refuse_kmeans

if TYPE_CHECKING:
    from cityseg.labelled_folders import LabelSource

CACHE_FORMAT = 1  # bump when the stored labels change meaning, so old caches are not reused


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cityseg``, or ``~/.cache/cityseg``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cityseg"


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, or :func:`default_cache_dir` when it is empty or None."""
    return Path(cache_dir) if cache_dir else default_cache_dir()


class LabelCache:
    """Labels of pair images, computed once and kept on disk as ``.npy`` files.

    An entry is keyed by the source file (resolved path, size, mtime_ns), the labeller's
    :meth:`~cityseg.labels.Labeller.key` and the mask side, so a changed file or setting is relabelled;
    entries are written to a temporary file and renamed, so an interrupted run never leaves a partial one.

    A Cityscapes release photo (:func:`~cityseg.pairs.is_release_photo`) is served from its ``gtFine``
    label ids instead, mapped to ``labeller.class_set`` on every read and never cached: the PNG already
    is the label, and decoding it costs less than the photo beside it. So is every photo of a labelled
    folder (``source``: KITTI, BDD100K, ``images/`` + ``labels/`` ...), from its label image.

    Args:
        labeller: what computes the labels (for exact labels, only its ``class_set`` is used).
        cache_dir: cache folder (default ``$XDG_CACHE_HOME/cityseg`` or ``~/.cache/cityseg``).
        enabled: False to compute every time and write nothing.
        source: the labelled folder the photos are from (:func:`cityseg.labelled_folders.label_source`), or None.

    Example:
        >>> cache = LabelCache(PaletteLabeller())  # doctest: +SKIP
        >>> cache.get("train/1.jpg").shape  # doctest: +SKIP
        (256, 256)
    """

    def __init__(
        self,
        labeller: Labeller,
        cache_dir: str | os.PathLike | None = None,
        enabled: bool = True,
        source: LabelSource | None = None,
    ):
        self.labeller = labeller
        self.enabled = enabled
        self.source = source
        self.folder = cache_root(cache_dir) / "labels" / labeller.key()
        if enabled:
            ensure_writable_dir(self.folder)

    def entry(self, path: str | os.PathLike, mask_side: str = "right") -> Path:
        """The cache file for ``path``."""
        source = Path(path).resolve()
        try:
            stat = source.stat()
        except OSError as exc:
            raise CitysegError(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
        key = f"{CACHE_FORMAT}|{source}|{stat.st_size}|{stat.st_mtime_ns}|{self.labeller.key()}|{mask_side}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:32]}.npy"

    def get(self, path: str | os.PathLike, mask_side: str = "right") -> np.ndarray:
        """(H, W) uint8 class indices of the pair image ``path``, from the cache or computed and stored."""
        return self.pair(path, mask_side, need_photo=False)[1]

    def pair(
        self, path: str | os.PathLike, mask_side: str = "right", need_photo: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """``(photo, labels)``, decoding the image once; ``photo`` is None when not needed and labels are cached.

        For a release photo ``photo`` is None when not needed, and ``mask_side`` does not apply.
        """
        from cityseg.pairs import is_release_photo, read_pair

        if self.source is not None:
            if self.labeller.method == "kmeans":
                refuse_kmeans(path)
            return self.source.read(path, self.labeller.class_set, need_photo)
        if is_release_photo(path):
            return self._release_pair(path, need_photo)
        entry = self.entry(path, mask_side) if self.enabled else None
        if entry is not None and entry.exists():
            labels = _load_labels(entry)
            if labels is not None:
                photo = read_pair(path, mask_side)[0] if need_photo else None
                return photo, labels
        photo, mask = read_pair(path, mask_side)
        labels = self.labeller.label(mask, source=str(path))
        if entry is not None:
            try:
                with atomic_path(entry, needed=labels.nbytes + 128) as tmp:  # 128: the .npy header
                    np.save(tmp, labels)
            except OSError as exc:
                raise CitysegError(
                    f"cannot write label cache {entry}: {exc.strerror or exc}; free space or choose --cache-dir"
                ) from None
        return photo, labels

    def _release_pair(self, path: str | os.PathLike, need_photo: bool) -> tuple[np.ndarray | None, np.ndarray]:
        from cityseg.pairs import read_release, read_release_truth

        if self.labeller.method == "kmeans":
            refuse_kmeans(path)
        if need_photo:
            photo, label_ids = read_release(path)  # (H, W, 3), (H, W); sizes checked against each other
        else:
            photo, label_ids = None, read_release_truth(path)
        return photo, self.labeller.class_set.from_label_ids(label_ids)  # (H, W) uint8 class indices


def _load_labels(entry: Path) -> np.ndarray | None:
    try:
        labels = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # damaged entry: recompute and overwrite
    return labels if labels.dtype == np.uint8 and labels.ndim == 2 else None
