"""Choosing a labeller by name, and rebuilding one from the JSON it was saved as."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cityseg.errors import CitysegError
from cityseg.files import ensure_writable_dir
from cityseg.labels.base import Labeller, refuse_kmeans
from cityseg.labels.cache import cache_root
from cityseg.labels.kmeans import KMeansLabeller
from cityseg.labels.palette import PaletteLabeller


def _make_palette(label_config, paths, mask_side, cache_dir) -> Labeller:
    return PaletteLabeller(label_config.classes, label_config.max_distance)


def _make_kmeans(label_config, paths, mask_side, cache_dir) -> Labeller:
    """Reuse centres fitted earlier on the same images with the same settings, else fit and keep them."""
    fit_key = hashlib.sha1(
        json.dumps(
            [label_config.k, label_config.seed, label_config.kmeans_pixels, mask_side, [str(p) for p in paths]]
        ).encode()
    ).hexdigest()[:16]
    saved = ensure_writable_dir(cache_root(cache_dir) / "kmeans") / f"{fit_key}.json"
    if saved.exists():
        try:
            return KMeansLabeller.load(saved)
        except CitysegError:
            pass  # a damaged file: refit and overwrite it
    labeller = KMeansLabeller.fit(
        paths, k=label_config.k, seed=label_config.seed, pixels=label_config.kmeans_pixels, mask_side=mask_side
    )
    labeller.save(saved)
    return labeller


# labels.method -> factory(label_config, paths, mask_side, cache_dir)
LABELLERS: dict[str, Callable[..., Labeller]] = {"palette": _make_palette, "kmeans": _make_kmeans}


def make_labeller(
    label_config,
    paths: Sequence[Path],
    mask_side: str = "right",
    cache_dir: str | os.PathLike | None = None,
    exact: bool = False,
) -> Labeller:
    """The labeller ``label_config.method`` names (a :class:`~cityseg.config.LabelConfig`).

    ``kmeans`` fits on ``paths`` (or reuses centres fitted before with the same settings, kept in the cache);
    it is refused for photos with exact labels (``exact``: a labelled folder's, or the release's).
    """
    try:
        factory = LABELLERS[label_config.method]
    except KeyError:
        raise CitysegError(
            f"unknown labelling method {label_config.method!r}; choose one of: {', '.join(LABELLERS)}"
        ) from None
    paths = list(paths)
    if label_config.method == "kmeans":
        from cityseg.pairs import is_release_photo

        release = next((p for p in paths if exact or is_release_photo(p)), None)
        if release is not None:
            refuse_kmeans(release)
    return factory(label_config, paths, mask_side, cache_dir)


def _palette_from_dict(values: dict) -> Labeller:
    options = {k: v for k, v in values.items() if k != "method"}
    try:
        return PaletteLabeller(**options)
    except TypeError as exc:
        raise CitysegError(f"bad palette labeller settings {options}: {exc}") from None


def _kmeans_from_dict(values: dict) -> Labeller:
    return KMeansLabeller(
        values["centers"], values.get("seed", 0), values.get("pixels", 0), values.get("mask_side", "right")
    )


# the "method" of a saved labeller -> how to rebuild it from the rest of its JSON
_FROM_DICT: dict[str, Callable[[dict], Labeller]] = {"palette": _palette_from_dict, "kmeans": _kmeans_from_dict}


def labeller_from_dict(values: dict) -> Labeller:
    """Rebuild a labeller from :meth:`Labeller.to_dict` output."""
    method = values.get("method")
    rebuild = _FROM_DICT.get(method) if isinstance(method, str) else None
    if rebuild is None:
        raise CitysegError(f"unknown labelling method {method!r}; valid: {', '.join(LABELLERS)}")
    return rebuild(values)


def load_labeller(path: str | os.PathLike) -> Labeller:
    """Read a labeller saved by :meth:`Labeller.save`."""
    try:
        values = json.loads(Path(path).read_text())
        return labeller_from_dict(values)
    except OSError as exc:
        raise CitysegError(f"cannot read labeller file {path}: {exc.strerror or exc}; check the path") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CitysegError(f"labeller file {path} is corrupt ({exc}); delete it to refit") from None
