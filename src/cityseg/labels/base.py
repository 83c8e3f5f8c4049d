"""What every labeller is: a colour mask in, class indices of its class set out, savable as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cityseg.classes import ClassSet
from cityseg.errors import CitysegError
from cityseg.files import atomic_path

if TYPE_CHECKING:
    from cityseg.config import LabelConfig


@dataclass(frozen=True)
class LabelData:
    """The images a labeller is made for, and how they are read (what :meth:`Labeller.from_config` fits on).

    Args:
        paths: the images to label (a labeller fitted on the data fits on them).
        mask_side: which half of a pair image is the mask.
        cache_dir: where labels (and anything fitted) are cached; None: the user cache.
        exact: the photos have exact labels (a labelled folder's, or the release's).
    """

    paths: Sequence[Path] = ()
    mask_side: str = "right"
    cache_dir: str | os.PathLike | None = None
    exact: bool = False


class Labeller:
    """Base: turns an (H, W, 3) uint8 colour mask into (H, W) uint8 class indices of ``class_set``.

    Subclasses set ``method`` and ``class_set`` and implement :meth:`label`, :meth:`key` and :meth:`to_dict`,
    and the two ways to build one: :meth:`from_config` (``cityseg label``, training) and :meth:`from_dict`
    (what :meth:`to_dict` saved). :data:`cityseg.labels.LABELLERS` lists them by ``method``.
    """

    method = ""
    class_set: ClassSet

    @classmethod
    def from_config(cls, label_config: LabelConfig, data: LabelData) -> Labeller:
        """The labeller ``label_config`` describes, for the images of ``data`` (:func:`~cityseg.labels.make_labeller`).

        Args:
            label_config: the ``labels`` section of the config (its ``method`` names this class).
            data: the images to label and how to read them.
        """
        raise NotImplementedError

    @classmethod
    def from_dict(cls, values: dict) -> Labeller:
        """Rebuild a labeller from its :meth:`to_dict` output."""
        raise NotImplementedError

    def key(self) -> str:
        """Method and parameters, as a short file-name-safe string; cached labels are keyed by it."""
        raise NotImplementedError

    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        """(H, W, 3) uint8 colour mask -> (H, W) uint8 class indices (IGNORE_INDEX for void).

        ``source`` names the file in error messages.
        """
        raise NotImplementedError

    def prepare(self) -> Labeller:
        """Build lookup tables now (before worker processes fork, so they share them)."""
        return self

    def to_dict(self) -> dict:
        """Everything needed to rebuild this labeller (see :meth:`from_dict`)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically, so training, evaluation and prediction share one labeller."""
        path = Path(path)
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise CitysegError(
                f"cannot write labeller file {path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        return path


def load_saved(path: str | os.PathLike, rebuild: Callable[[dict], Labeller]) -> Labeller:
    """Read a labeller saved by :meth:`Labeller.save` and ``rebuild`` it from its JSON.

    Raises:
        CitysegError: an unreadable file, or one whose JSON does not rebuild (one line naming the file).
    """
    try:
        values = json.loads(Path(path).read_text())
        return rebuild(values)
    except OSError as exc:
        raise CitysegError(f"cannot read labeller file {path}: {exc.strerror or exc}; check the path") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CitysegError(f"labeller file {path} is corrupt ({exc}); delete it to refit") from None


def check_mask(mask_rgb: np.ndarray, source: str) -> np.ndarray:
    """``mask_rgb`` as an array, if it is an (H, W, 3) uint8 RGB mask; else a one-line error naming ``source``."""
    mask_rgb = np.asarray(mask_rgb)
    if mask_rgb.ndim != 3 or mask_rgb.shape[2] != 3 or mask_rgb.dtype != np.uint8:
        raise CitysegError(
            f"{source or 'mask'}: expected an (H, W, 3) uint8 RGB mask, got {mask_rgb.shape} {mask_rgb.dtype}"
        )
    return mask_rgb


def refuse_kmeans(photo: str | os.PathLike) -> None:
    """Raise: K-Means classes are clusters of mask colours, meaningless for a photo with exact labels."""
    raise CitysegError(
        f"labels.method=kmeans clusters the colours of pair images' masks, but {photo} has exact labels (a label "
        "image beside it, as a Cityscapes release photo has); use labels.method=palette (its labels are then read as "
        "they are)"
    )
