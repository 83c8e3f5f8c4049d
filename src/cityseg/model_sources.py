"""Where a MODEL comes from: a folder on disk, a model that ships with cityseg, or a Hugging Face Hub repository.

Every command that takes a MODEL (``predict``, ``evaluate``, ``export``, ``serve``, ``train --init``) and
:meth:`cityseg.engine.Segmenter.from_pretrained` turn it into a model folder here, in this order:

1. **A path that exists** (a model folder, a run folder, ``runs/latest``) is used as it is: a local folder
   always wins, so ``./owner/name`` reaches a local folder of that name; so does a path whose parent folder
   exists here (``runs/latest`` before the first run gets the local error, not a Hub lookup).
2. **A built-in name** (:func:`builtin_models`, e.g. ``cityscapes-fpn-lite0``): a model folder inside the
   package, read-only, with its weights, ONNX graph, class table and model card.
3. **A Hub repository** ``owner/name`` or ``owner/name@revision`` (a branch, tag or commit): fetched through
   ``huggingface_hub`` into its cache (``HF_HOME``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` apply), then used offline
   (:mod:`cityseg.hub`).

Light on purpose, as :mod:`cityseg.run_folders`: the Hub code is imported only for a Hub repository.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cityseg.errors import CitysegError
from cityseg.run_folders import INFO_FILE, find_local_model

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"  # the built-in models, one folder each
DEFAULT_MODEL = "cityscapes-fpn-lite0"  # the built-in model the README's first command uses
# owner/name[@revision], as the Hub spells repository ids (letters, digits, - _ .; at most 96 characters each)
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<revision>[\w./-]+))?$")
KINDS = ("local", "builtin", "hub")  # where a model came from (ModelSource.kind)


@dataclass(frozen=True)
class ModelSource:
    """A model found: its folder, the run it belongs to, and where it came from.

    Args:
        folder: the model folder (``config.json``, ``model.safetensors``, ``cityseg.json`` ...).
        run: the run folder it was trained in, for a local run's model; else None.
        kind: ``local``, ``builtin`` or ``hub`` (:data:`KINDS`). Built-in and Hub folders are read-only:
            nothing is written into them (an export of one needs ``--out``).
        name: what the user wrote.
    """

    folder: Path
    run: Path | None = None
    kind: str = "local"
    name: str = ""

    @property
    def read_only(self) -> bool:
        return self.kind != "local"


@cache
def builtin_models() -> dict[str, Path]:
    """The models that ship with cityseg: name -> model folder (each folder of ``pretrained/`` with a cityseg.json)."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(PRETRAINED_DIR.iterdir())
        if folder.is_dir() and (folder / INFO_FILE).is_file()
    }


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of ``owner/name[@revision]``, or None when ``spec`` is not written that way.

    Example:
        >>> parse_hub_id("smp-hub/segformer-b0-768x768-city-160k@main")
        ('smp-hub/segformer-b0-768x768-city-160k', 'main')
        >>> parse_hub_id("runs/latest/model") is None
        True
    """
    match = HUB_ID.match(str(spec))
    if match is None or str(spec).startswith((".", "/")):
        return None
    return match["repo"], match["revision"]


def locate_model(spec: str | os.PathLike, classes: str | None = None) -> ModelSource:
    """The model folder behind ``spec``: a local path, a built-in name or a Hub repository (see the module).

    Args:
        spec: what the user wrote as MODEL.
        classes: for a Hub checkpoint that does not name its classes (segmentation-models-pytorch's), the
            class set or class-table file its outputs are (``train19`` ...); ignored for models that name theirs.

    Raises:
        CitysegError: nothing there by any of the three ways, or a Hub repository that cannot be used
            (:func:`cityseg.hub.fetch_model` says why).
    """
    path = Path(spec)
    # a path, or one whose folder is here (runs/latest before the first run): the local error is the helpful one
    local = path.exists() or path.is_symlink() or isinstance(spec, os.PathLike)
    if local or (path.parent.name and path.parent.is_dir()):
        folder, run = find_local_model(path)
        return ModelSource(folder, run, "local", str(spec))
    name = str(spec)
    if name in builtin_models():
        return ModelSource(builtin_models()[name], None, "builtin", name)
    hub_id = parse_hub_id(name)
    if hub_id is not None:
        from cityseg.hub import fetch_model

        return ModelSource(fetch_model(hub_id[0], hub_id[1], classes=classes), None, "hub", name)
    raise CitysegError(f"model {spec} not found; {model_not_found_hint()}")


def find_model(spec: str | os.PathLike, classes: str | None = None) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) behind ``spec`` (see :func:`locate_model`)."""
    source = locate_model(spec, classes)
    return source.folder, source.run


def resolve_model_dir(spec: str | os.PathLike, classes: str | None = None) -> Path:
    """The model folder behind ``spec`` (see :func:`locate_model`)."""
    return locate_model(spec, classes).folder


def model_not_found_hint() -> str:
    """What a MODEL may be, for error messages: the ways and the built-in names."""
    names = ", ".join(builtin_models()) or "none installed"
    return f"pass a model folder, a run folder, runs/latest, a built-in model ({names}) or a Hub repository owner/name"


# ---- the ready models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One ready model for ``cityseg models``: its name, where it is, its size, classes and held-out mIoU."""

    name: str
    kind: str
    folder: Path
    size_bytes: int
    classes: str
    miou: float | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.kind,
            "folder": str(self.folder),
            "size_bytes": self.size_bytes,
            "classes": self.classes,
            "mIoU": self.miou,
        }

    def row(self) -> tuple[str, ...]:
        miou = "" if self.miou is None else f"{100 * self.miou:.1f}"
        return (self.name, self.kind, f"{self.size_bytes / 1e6:.1f} MB", self.classes, miou, str(self.folder))


def list_models() -> list[ModelEntry]:
    """The built-in models, then the Hub models in the local cache that cityseg can run."""
    entries = [
        _entry(name, "builtin", folder, sum(f.stat().st_size for f in folder.iterdir() if f.is_file()))
        for name, folder in builtin_models().items()
    ]
    from cityseg.hub import cached_models

    entries += [_entry(name, "hub", folder, size) for name, folder, size in cached_models()]
    return entries


def _entry(name: str, kind: str, folder: Path, size: int) -> ModelEntry:
    """What a model folder says about itself: its classes (cityseg.json or smp's config) and metrics.json's mIoU."""
    info, metrics, config = (_read_json(folder / file) for file in (INFO_FILE, "metrics.json", "config.json"))
    if info:
        classes = f"{info.get('class_set', '?')} ({len(info.get('names', []))})"
    else:
        classes = f"{config.get('classes', '?')} outputs, unnamed"
    miou = metrics.get("mIoU")
    return ModelEntry(name, kind, folder, size, classes, float(miou) if isinstance(miou, int | float) else None)


def _read_json(path: Path) -> dict:
    import json

    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}
