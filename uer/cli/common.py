"""What every command shares: logging setup and turning a :class:`UerError` into one line on
stderr and exit status 2."""
from __future__ import annotations

import logging
import os
import sys

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
