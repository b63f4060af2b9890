"""Assertions shared by test files (imported as ``from checks import ...``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

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


PARITY_RTOL = 1e-4
"""Relative tolerance of parity checks: float32 rounding through a dozen layers in another library
version stays around 1e-6 relative; a wrong mapping (a swapped or transposed weight, a missing bias,
a 0.1% scale error) is off by far more."""
PARITY_ATOL = 1e-5
"""Absolute tolerance per unit of the largest magnitude compared (values near zero)."""


def assert_parity(actual, expected, msg: str | None = None) -> None:
    """``torch.testing.assert_close`` with tolerances that scale with the magnitude compared:
    ``rtol`` :data:`PARITY_RTOL` and ``atol`` :data:`PARITY_ATOL` times max(1, max |expected|)."""
    import torch

    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=PARITY_RTOL, atol=PARITY_ATOL * scale, msg=msg)


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under the directory ``root``, by relative path: what "untouched" compares."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def shortest_recordings(shared_data: Path, split: str, count: int, tsv: Path) -> Path:
    """A ``path<TAB>transcript`` manifest at ``tsv`` of the ``count`` shortest recordings of the shared
    speech corpus's ``split`` (absolute paths), for tests that train or transcribe in seconds."""
    lines = (shared_data / "speech" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = sorted((line.split("\t") for line in lines[1:]), key=lambda r: float(r[header.index("duration_s")]))[:count]
    tsv.write_text("path\ttranscript\n" + "".join(
        f"{shared_data / 'speech' / r[header.index('path')]}\t{r[header.index('transcript')]}\n" for r in rows))
    return tsv
