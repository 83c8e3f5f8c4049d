"""Run folders and model folders: create a run, point ``runs/latest`` at it, and find a model from any path.

A *run folder* (``runs/<timestamp>/``) holds ``config.yaml``, the logs, checkpoints and, once training
has finished, the *model folder* ``model/`` (smp's files plus ``cityseg.json``). Every command that takes
a model (``evaluate``, ``predict``, ``export``, ``serve``) accepts a model folder, a run folder or
``runs/latest``; :func:`find_local_model` is the one place that turns such a path into folders (and
:mod:`cityseg.model_sources` the one that adds built-in names and Hub repositories).

Light on purpose: no torch, numpy or PIL, so the ONNX-only prediction path and the CLI stay quick.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text

INFO_FILE = "cityseg.json"  # the ModelInfo of a model folder (cityseg.models re-exports it)
CONFIG_FILE = "config.yaml"  # the config a run was made with
MODEL_DIR = "model"  # the finished model inside a run folder
SPLITS_FILE = "splits.json"  # the run's train/val/test lists and the note saying what was held out
LATEST = "latest"  # runs/latest: a symlink to the newest run, or a text file naming it


def new_run_dir(runs_dir: str | os.PathLike) -> Path:
    """Create ``runs_dir/<timestamp>`` (with a suffix if that second is taken) and return it."""
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = runs / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CitysegError(f"cannot create a new run folder in {runs}; clean it up")


def update_latest(run_dir: Path) -> None:
    """Point ``runs/latest`` at ``run_dir``: a relative symlink swapped in atomically, else a text file."""
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)  # atomic: readers see the old or the new run, never neither
    except OSError:
        tmp.unlink(missing_ok=True)
        if link.is_symlink() or link.is_dir():
            try:
                link.unlink()
            except OSError:
                return
        atomic_write_text(link, run_dir.name + "\n")


def _follow_latest(path: Path) -> Path:
    """``runs/latest`` as a text file (file systems without symlinks) names the run beside it."""
    if path.is_file() and path.name == LATEST:
        return path.parent / path.read_text().strip()
    return path


def resolve_run(path: str | os.PathLike) -> Path:
    """A run folder from its path, a ``latest`` symlink, or a ``latest`` text file naming one."""
    run = _follow_latest(Path(path))
    if not run.is_dir():
        raise CitysegError(f"run folder {path} does not exist; pass a folder under runs/ (or runs/latest)")
    return run.resolve()


def find_local_model(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) behind a model folder, a run folder or ``runs/latest`` on disk.

    :func:`cityseg.model_sources.find_model` also takes built-in model names and Hub repositories.

    Raises:
        CitysegError: nothing there, a file, or a folder that is neither a model nor a finished run.
    """
    given = Path(path)
    folder = _follow_latest(given)
    if not folder.exists():
        raise CitysegError(
            f"model {given} not found; pass a model folder, a run folder, runs/latest, a built-in model "
            "(cityseg models lists them) or a Hub repository owner/name"
        )
    if not folder.is_dir():
        raise CitysegError(f"model {given} is a file; pass the model folder (with {INFO_FILE}) or a run folder")
    if (folder / INFO_FILE).is_file():
        run = folder.parent if (folder.parent / CONFIG_FILE).is_file() else None
        return folder, run
    if (folder / MODEL_DIR / INFO_FILE).is_file():
        return folder / MODEL_DIR, folder
    if (folder / CONFIG_FILE).is_file():
        raise CitysegError(
            f"run {given} has no finished model (no {MODEL_DIR}/{INFO_FILE}); let training finish, "
            "or resume it with cityseg train --resume"
        )
    raise CitysegError(f"{given} is not a model folder (no {INFO_FILE}) or a run folder (no model/); check the path")
