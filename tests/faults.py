"""Helpers of the fault tests (issue 14): a real ``uer-pretrain`` run in this process, and file digests
to prove a checkpoint was left byte for byte as it was."""
from __future__ import annotations

import hashlib
from pathlib import Path

from uer.cli.pretrain import main as pretrain_main


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, by relative path."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def pretrain(capsys, args: list[str]) -> tuple[int, list[str]]:
    """``uer-pretrain <args>`` in this process (the session's dataset cache, see conftest): the exit
    status and the ``error:`` lines."""
    code = pretrain_main(args)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
