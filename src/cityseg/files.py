"""Small file helpers shared by every stage: atomic writes and natural ordering."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cityseg.errors import CitysegError


def natural_key(path: str | os.PathLike) -> list:
    """Sort key that puts ``2.jpg`` before ``10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", Path(path).name)]


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it can be written, or raise a one-line error naming it."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CitysegError(
            f"cannot write to output folder {folder}: {exc.strerror or exc}; choose a writable folder"
        ) from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on failure remove it.

    Readers never see a half-written file, and an interrupted run leaves no partial output behind.
    The temporary name keeps the suffix so libraries that choose a format by extension still work.
    A full disk (``ENOSPC``) becomes a one-line :class:`CitysegError` naming the file, the bytes it needed
    (``needed``, where the caller knows them) and the bytes free; the previous file, if any, is untouched.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise CitysegError(disk_full_message(target, needed)) from None
        raise
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def disk_full_message(target: Path, needed: int | None = None) -> str:
    """``disk full writing FILE (needs N MB, M MB free); free some space ...``: the text of every ENOSPC."""
    try:
        free = f"{human_size(shutil.disk_usage(target.parent).free)} free"
    except OSError:
        free = "free space unknown"
    need = f"needs {human_size(needed)}, " if needed else ""
    return f"disk full writing {target} ({need}{free}); free some space and run again (nothing half-written was kept)"


def human_size(count: int) -> str:
    """``2 bytes``, ``781 KB``, ``1.5 MB``, ``12.0 GB``: sizes in error messages.

    Example:
        >>> human_size(2), human_size(800_000), human_size(3 * 2**29)
        ('2 bytes', '781 KB', '1.5 GB')
    """
    if count < 2**10:
        return f"{count} bytes"
    if count < 2**20:
        return f"{count / 2**10:.0f} KB"
    if count < 2**30:
        return f"{count / 2**20:.1f} MB"
    return f"{count / 2**30:.1f} GB"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
