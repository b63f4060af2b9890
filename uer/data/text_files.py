"""Reading the small UTF-8 text files users hand over (manifests, caption and transcript files)."""
from __future__ import annotations

from pathlib import Path

from uer.errors import UerError


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of the UTF-8 text file ``path``, without line ends and a leading byte order mark.

    Raises:
        UerError: ``"{what} {path}: ..."`` when the file cannot be read or is not UTF-8.
    """
    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UerError(f"{what} {path}: not a UTF-8 text file") from None
    except OSError as err:
        raise UerError(f"{what} {path}: cannot read ({err.strerror or err})") from None
