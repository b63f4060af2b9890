"""Assertions shared by test files (imported as ``from checks import ...``)."""
from __future__ import annotations

import pytest

from uer.errors import UerError


def one_line_error(call, *needles: str) -> str:
    """Run ``call()``, assert it raises a one-line :class:`UerError` containing every needle, and
    return the message."""
    with pytest.raises(UerError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(needle in message for needle in needles), message
    return message
