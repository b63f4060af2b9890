"""Helper of the fault tests (issue 14): a real ``uer-pretrain`` run in this process (file digests
that prove a checkpoint untouched are ``checks.digest``)."""
from __future__ import annotations

from uer.cli.pretrain import main as pretrain_main


def pretrain(capsys, args: list[str]) -> tuple[int, list[str]]:
    """``uer-pretrain <args>`` in this process (the session's dataset cache, see conftest): the exit
    status and the ``error:`` lines."""
    code = pretrain_main(args)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
