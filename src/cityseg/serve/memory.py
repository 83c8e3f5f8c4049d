"""Keeping a long-running server's resident memory flat.

A server that decodes photos of many sizes in several threads leaves the C heap holding freed buffers:
glibc gives each thread that allocates at once an arena of its own (up to 8 per core) and returns memory to
the system only from the top of each. Resident memory then creeps up by the size of the largest photos ever
served, per arena. Two glibc settings keep it flat (elsewhere they are skipped and the heap stays as it is):
the arenas are capped (``mallopt(M_ARENA_MAX)``) when the server starts, and a thread gives the freed pages
back (``malloc_trim``) every few seconds. Measured in ``benchmarks/soak.py`` (BENCHMARKS.md, "Soak").
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2  # arenas the server's threads share: enough that they rarely wait for one another
TRIM_SECONDS = 5.0  # how often freed pages go back to the system


def _libc():
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):
            return libc
    return None


def cap_arenas(count: int = ARENAS) -> bool:
    """Cap the C heap's arenas (glibc); True when the setting took."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, count) == 1)


def trim_heap() -> None:
    """Give the pages the C heap holds free back to the system (glibc's ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def release_memory() -> None:
    """After a large job (a video): collect objects in reference cycles, then trim the heap."""
    gc.collect()
    trim_heap()


class HeapTrimmer:
    """A daemon thread that trims the heap every ``seconds`` until :meth:`stop`."""

    def __init__(self, seconds: float = TRIM_SECONDS):
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cityseg-heap-trim", daemon=True)

    def start(self) -> HeapTrimmer:
        if _libc() is not None:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            trim_heap()

    def stop(self) -> None:
        self._stop.set()
