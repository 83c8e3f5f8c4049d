"""Bounded queues between the threads of the video pipeline, which either end can cancel.

Each stage runs in its own thread (decoding, inference, encoding) and hands its results on through a
:class:`Pipe` of a few items: a fast stage waits for a slow one instead of piling up frames, so memory
stays the same however long the video is. PyAV (FFmpeg), PyTorch, ONNX Runtime and PIL release the GIL in
their heavy calls, so the stages really run at once and the slowest one sets the pace.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

POLL_S = 0.1  # how often a waiting thread looks whether the pipe was cancelled


class _End:
    """The item that closes a pipe; ``error`` is the producer's exception, if it stopped on one."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


class Pipe:
    """A bounded FIFO between a producer thread and a consumer thread.

    ``put`` blocks while the pipe is full, ``get`` while it is empty; after :meth:`cancel` both return at
    once, so neither end can hang on a partner that has stopped.

    Example:
        >>> pipe = Pipe(3)  # room for the two items and the end
        >>> pipe.put(1), pipe.put(2)
        (True, True)
        >>> pipe.close()
        >>> list(pipe)
        [1, 2]
    """

    def __init__(self, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(size)))
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop both ends: pending and later ``put`` calls return False, ``get`` ends the iteration."""
        self._cancelled.set()

    def put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False if the pipe was cancelled meanwhile."""
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def close(self, error: BaseException | None = None) -> None:
        """The producer is done (with ``error`` if it failed): the consumer's iteration ends after the last item."""
        self.put(_End(error))

    def __iter__(self) -> Iterator[Any]:
        """The items in order, until the producer closes the pipe (re-raising its error) or it is cancelled."""
        while not self._cancelled.is_set():
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item


class Worker(threading.Thread):
    """A daemon thread running ``work()``; :meth:`finish` waits for it and raises what it raised.

    ``busy_s`` is for the work to add its own busy seconds to (see :meth:`timed`), not counting the time
    it waits on its pipes: the stage's share of the work.
    """

    def __init__(self, name: str, work: Callable[[], None]):
        super().__init__(name=name, daemon=True)  # a daemon never keeps an interrupted process alive
        self._work = work
        self.error: BaseException | None = None
        self.busy_s = 0.0

    def run(self) -> None:
        try:
            with one_openmp_thread():
                self._work()
        except BaseException as exc:  # handed to the thread that calls finish()
            self.error = exc

    def timed(self) -> _Stopwatch:
        """A context manager adding the seconds spent inside it to ``busy_s``."""
        return _Stopwatch(self)

    def finish(self) -> None:
        """Wait for the thread to end, then raise its exception if it had one."""
        self.join()
        if self.error is not None:
            raise self.error


class _Stopwatch:
    def __init__(self, owner: Any):
        self.owner = owner

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.owner.busy_s += time.perf_counter() - self.began


@contextlib.contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Run the calling thread's OpenMP work (torch's CPU operations) on one thread; other threads keep theirs.

    The decoding thread's torch calls (the resize of preprocessing) take under a millisecond each on one
    core. On a team of OpenMP threads they took 15-70 ms of CPU at 720p beside a running model: the team
    spins while it waits, against the model's own threads (measured with OpenVINO and ONNX Runtime on 2
    cores). OpenMP keeps the thread count per thread, so this leaves the model's thread and the user's
    settings alone. torch sets a thread's count at its first torch call there, so that call comes first.
    """
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.get_num_threads()
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
