"""One exception type for every problem a user can fix: the CLI prints its message on one line."""


class CitysegError(Exception):
    """A problem with the user's input or environment, stated in one line: what, where, and what to do.

    The CLI prints ``cityseg: error: <message>`` and exits with status 2, never a traceback.
    """
