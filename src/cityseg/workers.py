"""Errors raised in other processes reach the user as the same one line as errors raised here.

cityseg runs work in three kinds of other process: labelling workers (a ``ProcessPoolExecutor``), DataLoader
workers and DDP ranks. Each library hands a worker's exception back differently: a failing pool initializer
kills the pool (``BrokenProcessPool``, with the real error printed as a traceback by the dying worker), and
PyTorch re-raises a DataLoader worker's exception with the worker's whole traceback folded into its message.
This module is the one mechanism for all of them:

* :func:`guarded_pool` makes a pool whose initializer never fails: its error is kept and raised, as a
  :class:`~cityseg.errors.CitysegError`, by the first task (so the parent gets the one line, not a dead pool);
  a pool that breaks anyway (a worker killed, out of memory) becomes a one-line error too;
* :func:`one_line` turns any exception that came back from a worker into the one-line message the CLI prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cityseg.errors import CitysegError, first_line

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


def one_line(exc: BaseException) -> str:
    """The one-line message of ``exc``, also when it came back from a DataLoader worker with its traceback.

    Example:
        >>> folded = "Caught CitysegError in DataLoader worker process 1.\\nOriginal Traceback (most recent call last):"
        >>> folded += "\\n  File ...\\ncityseg.errors.CitysegError: a.jpg: cannot decode; check it\\n"
        >>> one_line(CitysegError(folded))
        'a.jpg: cannot decode; check it (in DataLoader worker process 1)'
    """
    text = str(exc)
    match = _WORKER_TRACEBACK.match(text)
    if match is None:
        return first_line(exc)
    kind, where = match.groups()
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    message = last.split(": ", 1)[1] if ": " in last else last
    return f"{message} (in {where})" if kind == "CitysegError" else f"{kind}: {message} (in {where})"


def from_worker(exc: BaseException) -> bool:
    """Whether ``exc`` is an exception PyTorch re-raised from a DataLoader worker."""
    return bool(_WORKER_TRACEBACK.match(str(exc)))
