"""What every command shares: logging setup, turning a :class:`UerError` into one line on stderr
and exit status 2, and writing one output line per input."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from uer.errors import UerError


def run_command(job, argv: list[str]) -> int:
    """Call ``job(argv)``; print ``error: <message>`` and return 2 on :class:`UerError`. The message
    is printed on one line (newlines in it, e.g. from a wrapped library error, become spaces)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return job(argv)
    except UerError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def write_lines(lines: list[str], output: str | None) -> None:
    """Write ``lines`` (one per input, newline-terminated) to the file ``output``, or stdout when None.

    Raises:
        UerError: ``output`` cannot be written (``--output FILE: cannot write (reason)``).
    """
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UerError(f"--output {output}: cannot write ({e.strerror})") from None
