"""One exception type for every problem a user can fix: the CLI prints its message on one line."""

# A file name may hold any character but / and NUL: a line break or another control character in one would split
# the one line of an error (found by fuzzing the layouts), so messages show them escaped, as Python's repr does.
CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85)} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


class CitysegError(Exception):
    """A problem with the user's input or environment, stated in one line: what, where, and what to do.

    The CLI prints ``cityseg: error: <message>`` and exits with status 2, never a traceback.

    Every subclass survives pickling whatever its ``__init__`` asks for, so an error raised in a worker process
    reaches the parent as itself (a pool rebuilds exceptions by pickling, which calls the class with ``args``
    alone: a subclass with a second required argument would break the pool and lose the message).
    """

    def __str__(self) -> str:
        return super().__str__().translate(CONTROL_ESCAPES)

    def __reduce__(self):
        return _rebuild, (type(self), self.args), self.__dict__


def _rebuild(kind: type[CitysegError], args: tuple) -> CitysegError:
    """An exception of ``kind`` with ``args``, made without its ``__init__``; pickle then restores its fields."""
    return kind.__new__(kind, *args)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
