"""Checkpoints that survive a kill or a full disk, and a check of one before a run resumes from it.

Lightning writes checkpoints through a :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO`
whose "atomic" save opens the target path for writing (through fsspec, whose local transaction first
writes a temporary file in the system's temporary folder and then *copies* it over the target when that
folder is another file system): a kill or a full disk in that window leaves a truncated ``last.ckpt``.
:class:`AtomicCheckpointIO` serialises the checkpoint in memory, writes it to a temporary file beside the
target and renames it into place (:func:`cityseg.files.atomic_write_bytes`), so at any moment the file is the
previous complete checkpoint or the new complete one; on a full disk it raises the one-line error that
names the file and the bytes it needed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cityseg.defaults import RESUME_FROM
from cityseg.errors import CitysegError, first_line
from cityseg.files import atomic_write_bytes
from cityseg.models.weights import load_torch_file

CHECKPOINTS_DIR = "checkpoints"  # RUN/checkpoints/{best,last}.ckpt
LAST_CHECKPOINT, BEST_CHECKPOINT = RESUME_FROM  # what --resume RUN --from may name


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing to a temporary file that is renamed into place when complete."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())


# what Lightning reads to resume: without one it fails with a KeyError deep inside (a checkpoint reduced to its
# weights, or another program's)
RESUMABLE_KEYS = frozenset({"state_dict", "pytorch-lightning_version", "epoch", "global_step"})


def checkpoint_path(run_dir: Path, which: str = LAST_CHECKPOINT) -> Path:
    """``RUN/checkpoints/<which>.ckpt``."""
    return run_dir / CHECKPOINTS_DIR / f"{which}.ckpt"


def check_checkpoint(run_dir: Path, which: str = LAST_CHECKPOINT) -> Path:
    """The checkpoint a resumed run starts from, after reading it whole; a damaged one is a one-line error.

    Args:
        run_dir: the run folder.
        which: ``last`` (default: where training stopped) or ``best`` (the best validation score).

    Raises:
        CitysegError: no such checkpoint, or one that cannot be read (truncated by a kill or a full disk
            before checkpoints were written atomically, or damaged since), naming the way on.
    """
    if which not in RESUME_FROM:
        raise CitysegError(f"unknown checkpoint {which!r}; choose one of: {', '.join(RESUME_FROM)}")
    path = checkpoint_path(run_dir, which)
    other = BEST_CHECKPOINT if which == LAST_CHECKPOINT else LAST_CHECKPOINT
    way_on = (
        f"resume from the other one with --resume {run_dir} --from {other}"
        if checkpoint_path(run_dir, other).is_file()
        else "start a new run instead"
    )
    if not path.is_file():
        raise CitysegError(f"run {run_dir} has no {CHECKPOINTS_DIR}/{path.name} to resume from; {way_on}")
    try:
        state = load_torch_file(path)
    except Exception as exc:  # torch raises many kinds for a damaged file (OSError, RuntimeError, EOFError, ...)
        size = os.path.getsize(path)
        raise CitysegError(f"checkpoint {path} is damaged ({first_line(exc)}; {size} bytes); {way_on}") from None
    if not isinstance(state, dict) or not RESUMABLE_KEYS.issubset(state):
        raise CitysegError(f"checkpoint {path} is not a Lightning checkpoint of a cityseg run; {way_on}")
    return path


def remove_unfinished_saves(run_dir: Path) -> int:
    """Delete the temporary files of checkpoint saves a kill cut short (``.last.*.tmp.ckpt``); how many.

    A killed save leaves its temporary file beside the complete checkpoint it was replacing (a rename never
    happened); a resumed run clears them, so kills do not pile up copies of the model on the disk.
    """
    unfinished = list((run_dir / CHECKPOINTS_DIR).glob(".*.tmp.ckpt"))
    for path in unfinished:
        path.unlink(missing_ok=True)
    return len(unfinished)
