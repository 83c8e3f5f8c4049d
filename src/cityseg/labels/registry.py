"""The labellers by name: one table of labeller classes, each building itself from the config or its saved JSON."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cityseg.errors import CitysegError
from cityseg.labels.base import LabelData, Labeller, load_saved
from cityseg.labels.kmeans import KMeansLabeller
from cityseg.labels.palette import PaletteLabeller

if TYPE_CHECKING:
    from cityseg.config import LabelConfig

# labels.method (and the "method" of a saved labeller) -> its class
LABELLERS: dict[str, type[Labeller]] = {kind.method: kind for kind in (PaletteLabeller, KMeansLabeller)}


def make_labeller(
    label_config: LabelConfig,
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
        kind = LABELLERS[label_config.method]
    except KeyError:
        raise CitysegError(
            f"unknown labelling method {label_config.method!r}; choose one of: {', '.join(LABELLERS)}"
        ) from None
    return kind.from_config(label_config, LabelData(list(paths), mask_side, cache_dir, exact))


def labeller_from_dict(values: dict) -> Labeller:
    """Rebuild a labeller from :meth:`Labeller.to_dict` output."""
    method = values.get("method")
    kind = LABELLERS.get(method) if isinstance(method, str) else None
    if kind is None:
        raise CitysegError(f"unknown labelling method {method!r}; valid: {', '.join(LABELLERS)}")
    return kind.from_dict(values)


def load_labeller(path: str | os.PathLike) -> Labeller:
    """Read a labeller saved by :meth:`Labeller.save`."""
    return load_saved(path, labeller_from_dict)
