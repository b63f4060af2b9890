"""The one exception type that commands turn into a one-line error message and a non-zero exit."""


class UerError(ValueError):
    """A user-facing error: bad input, bad configuration, or an inconsistent checkpoint.

    The message is a single line that names the file or key at fault and the problem, e.g.
    ``corpus /data/x.txt: file is empty``. Command-line entry points print it as
    ``error: <message>`` and exit with status 2; nothing half-written is left behind.
    """
