"""One exception type for every problem a user can fix: the CLI prints its message on one line."""


class CitysegError(Exception):
    """A problem with the user's input or environment, stated in one line: what, where, and what to do.

    The CLI prints ``cityseg: error: <message>`` and exits with status 2, never a traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
