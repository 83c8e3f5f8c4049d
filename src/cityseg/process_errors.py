"""Errors raised in other processes reach the user as the same one line as errors raised here.

cityseg runs work in three kinds of other process: labelling workers (a ``ProcessPoolExecutor``), DataLoader
workers and DDP ranks. Each library hands a worker's exception back differently: a failing pool initializer
kills the pool (``BrokenProcessPool``, with the real error printed as a traceback by the dying worker),
PyTorch re-raises a DataLoader worker's exception with the worker's whole traceback folded into its message,
and a DDP rank that stops leaves the others failing in their next collective ("Connection closed by peer").
This module is the one mechanism for all of them:

* :func:`guarded_pool` makes a pool whose initializer never fails: its error is kept and raised, as a
  :class:`~cityseg.errors.CitysegError`, by the first task (so the parent gets the one line, not a dead pool);
  a pool that breaks anyway (a worker killed, out of memory) becomes a one-line error too;
* :func:`one_line` turns any exception that came back from a worker into the one-line message the CLI prints;
* :func:`settle` is what the CLI calls with any exception: in a multi-process run the first process to fail
  records its line in the run's key-value store, every process closes its connections (so the others stop
  at once rather than at a timeout), and rank 0 alone prints that line; the others stay silent.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cityseg.errors import CONTROL_ESCAPES, CitysegError, first_line

_INIT_FAILURE: dict[str, str] = {}  # in a worker: the one-line error of its initializer, if it failed
# PyTorch's fold of a worker's exception: "Caught KeyError in DataLoader worker process 0.\nOriginal Traceback..."
_WORKER_TRACEBACK = re.compile(r"^Caught (\w+) in (.+?)\.\nOriginal Traceback", re.S)


def _guarded_init(initializer: Callable[..., None], *args: Any) -> None:
    try:
        initializer(*args)
    except Exception as exc:  # kept, not raised: a raising initializer breaks the whole pool with a traceback
        _INIT_FAILURE["message"] = one_line(exc)


def _guarded_task(task: Callable[[Any], Any], item: Any) -> Any:
    if "message" in _INIT_FAILURE:
        raise CitysegError(_INIT_FAILURE["message"])
    try:
        return task(item)
    except CitysegError:
        raise
    except Exception as exc:  # an unexpected error in a worker still names the item it was working on
        raise CitysegError(f"{item}: {one_line(exc)}") from None


@contextmanager
def guarded_pool(workers: int, initializer: Callable[..., None], initargs: tuple, what: str) -> Iterator[Callable]:
    """A process pool whose ``map(task, items, chunksize)`` raises workers' errors as one-line CitysegErrors.

    Args:
        workers: processes.
        initializer, initargs: run once in each worker (its error is raised by the first task instead).
        what: what the pool does, for the message when a worker dies (``labelling``).

    Yields:
        ``map(task, items, chunksize=1)``, like ``ProcessPoolExecutor.map``.
    """
    import functools
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, initializer=_guarded_init, initargs=(initializer, *initargs))

    def mapped(task: Callable[[Any], Any], items, chunksize: int = 1):
        return pool.map(functools.partial(_guarded_task, task), items, chunksize=chunksize)

    try:
        yield mapped
    except BrokenProcessPool:
        raise CitysegError(
            f"a {what} worker process died (killed, or out of memory); run again, or with --workers 1 to see "
            "which file it was working on"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def one_line(exc: BaseException, rank: int | None = None) -> str:
    """The one-line message of ``exc``, also when it came back from a DataLoader worker with its traceback.

    Args:
        exc: the exception.
        rank: the DDP rank it was raised in, named in the message; None in a single-process run.

    Example:
        >>> folded = "Caught CitysegError in DataLoader worker process 1.\\nOriginal Traceback (most recent call last):"
        >>> folded += "\\n  File ...\\ncityseg.errors.CitysegError: a.jpg: cannot decode; check it\\n"
        >>> one_line(CitysegError(folded))
        'a.jpg: cannot decode; check it (in DataLoader worker process 1)'
        >>> one_line(CitysegError(folded), rank=3)
        'a.jpg: cannot decode; check it (in DataLoader worker process 1 of rank 3)'
    """
    text = _raw_text(exc)
    match = _WORKER_TRACEBACK.match(text)
    if match is None:
        message, places = first_line(exc), []
    else:
        kind, where = match.groups()
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        message = (last.split(": ", 1)[1] if ": " in last else last).translate(CONTROL_ESCAPES)
        message, places = (message if kind == "CitysegError" else f"{kind}: {message}"), [where]
    places += [] if rank is None else [f"rank {rank}"]
    return f"{message} (in {' of '.join(places)})" if places else message


def from_worker(exc: BaseException) -> bool:
    """Whether ``exc`` is an exception PyTorch re-raised from a DataLoader worker."""
    return bool(_WORKER_TRACEBACK.match(_raw_text(exc)))


def _raw_text(exc: BaseException) -> str:
    """The message as raised: a CitysegError's ``str()`` escapes line breaks, and PyTorch folds a worker's
    traceback into the message of the exception it raises again, lines and all."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)


def settle(exc: BaseException) -> str | None:
    """What the CLI prints for ``exc``, in any process of a run.

    Returns:
        The one line to print after ``cityseg: error:`` (exit 2); ``""`` in a DDP rank whose failure rank 0
        prints (exit 2, silently); None for a bug of ours, whose traceback is what a report needs.
    """
    own = isinstance(exc, CitysegError) or from_worker(exc)
    distributed = sys.modules.get("torch.distributed")  # no torch loaded: no multi-process run either
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return one_line(exc) if own else None
    if distributed.get_world_size() < 2:
        return one_line(exc) if own else None
    return _RunProcesses(distributed).settle(exc, own)


# ---- the ranks of a multi-process run -----------------------------------------------------------------

_FIRST_FAILURE = "cityseg/first-failure"  # the run's first failure: its one line, or _BUG + the rank
_REPORTED = "cityseg/reported"  # rank 0's process id, once it has read the first failure
_STOPPED = "cityseg/stopped"  # how many other ranks have seen _REPORTED (after which they touch no store)
_BUG = "\0bug in rank "  # a bug of ours is shown as a traceback by the rank it happened in
_WAIT_S = 60.0  # for rank 0 to read the failure and exit; a rank stuck in a collective is not waited for
_KEEP: list = []  # rank 0 hosts the store: kept until exit, so the others' last calls are answered


class _RunProcesses:
    """One process of a ``torch.distributed`` run meeting an exception: who prints what, and when to exit.

    Rank 0 prints: it is the process the user started (Lightning's launcher starts the others as its children,
    and kills it when a child exits first) or the first one an outside launcher lists. The others wait until
    rank 0 has read the failure (and, when they are its children, until it has exited), then exit silently.
    """

    def __init__(self, distributed):
        self.distributed = distributed
        self.rank, self.world = distributed.get_rank(), distributed.get_world_size()
        # the run's key-value store, which every process reaches (torch has no public getter for it)
        self.store = distributed.distributed_c10d._get_default_store()

    def settle(self, exc: BaseException, own: bool) -> str | None:
        mine = one_line(exc, self.rank) if own else f"{_BUG}{self.rank}"
        alone = mine if own else (None if self.rank == 0 else "")  # what to say when no other process hears
        try:
            first = self.store.compare_set(_FIRST_FAILURE, "", mine).decode()  # the run's first failure wins
        except RuntimeError:  # the store went with the process that hosted it
            return alone
        finally:
            self.distributed.destroy_process_group()  # the others' collectives fail now, not at their timeout
        if self.rank == 0:
            _KEEP.append(self.store)
            self.store.set(_REPORTED, str(os.getpid()))
            self._poll(lambda: self.store.add(_STOPPED, 0) >= self.world - 1, _WAIT_S / 6)
            if not first.startswith(_BUG):
                return first
            rank = first.removeprefix(_BUG)
            return None if rank == "0" else f"rank {rank} stopped on the error above"
        if first == mine and not own:  # a bug in this rank: rank 0 cannot show its traceback
            import traceback

            traceback.print_exception(exc)
        try:
            if not self._poll(lambda: self.store.check([_REPORTED]), _WAIT_S):
                return alone  # rank 0 never read it (stuck in a collective): say it here
            reporter = int(self.store.get(_REPORTED))
            self.store.add(_STOPPED, 1)
        except RuntimeError:  # the store went with rank 0
            return alone
        if os.getppid() == reporter:  # rank 0's child: exit after it, or its launcher kills it before it prints
            self._poll(lambda: os.getppid() != reporter, _WAIT_S)
        return ""

    @staticmethod
    def _poll(done: Callable[[], bool], seconds: float) -> bool:
        """Whether ``done()`` came true within ``seconds`` (polled: the store's own waits log at timeouts)."""
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
