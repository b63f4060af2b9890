"""What every command shares: logging setup, turning a :class:`UerError` into one line on stderr
and exit status 2, Hydra's usual flags anywhere on a Hydra-style command line, and writing one
output line per input."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

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


class HydraFlags(NamedTuple):
    """The flags :func:`split_hydra_flags` took out of a command line."""

    help: bool
    """``-h`` / ``--help`` / ``--hydra-help``."""
    cfg: bool
    """``-c`` / ``--cfg [job|all]``: print the composed config and exit."""
    package: str | None
    """``-p`` / ``--package KEY``: print only this part of the config (``model``, ``data.seq_length``)."""
    resolve: bool
    """``--resolve``: evaluate interpolations in the printed config."""
    info: bool
    """``-i`` / ``--info``: the command's summary (uer-pretrain: the parameter count)."""


_VALUED = {"-c": "--cfg", "--cfg": "--cfg", "-p": "--package", "--package": "--package"}
_SWITCHES = {"-h": "--help", "--help": "--help", "--hydra-help": "--help", "--resolve": "--resolve",
             "-i": "--info", "--info": "--info"}


def split_hydra_flags(args: list[str]) -> tuple[HydraFlags, list[str]]:
    """Take Hydra's usual flags out of ``args`` wherever they stand (``+model=bert_mini --help``,
    ``--cfg job +model=x``) and return them with the remaining overrides, in order.

    ``--cfg`` takes an optional ``job`` or ``all`` (the same here: the commands compose no
    ``hydra:`` section); ``--info`` takes none (uer's meaning, not Hydra's ``--info all``).

    Raises:
        UerError: an unknown option (anything else that starts with ``-``, e.g. ``--multirun``),
            ``--cfg hydra``, or ``--package`` without a key.
    """
    seen: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg, i = args[i], i + 1
        flag, _, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag in _SWITCHES and not value:
            seen[_SWITCHES[flag]] = True
        elif _VALUED.get(flag) == "--cfg":
            if not value and i < len(args) and args[i] in ("job", "hydra", "all"):
                value, i = args[i], i + 1
            if value == "hydra":
                raise UerError("--cfg hydra: these commands compose no hydra: section; use --cfg job")
            if value not in ("", "job", "all"):
                raise UerError(f"--cfg {value}: expected job or all")
            seen["--cfg"] = True
        elif _VALUED.get(flag) == "--package":
            if not value and i < len(args):
                value, i = args[i], i + 1
            if not value:
                raise UerError("--package needs a key, e.g. --cfg --package model")
            seen["--package"] = value
        elif arg.startswith("-"):
            raise UerError(f"unknown option {arg}; options: -h/--help, --cfg [job|all], --package KEY, "
                           "--resolve, --info; everything else is key=value")
        else:
            rest.append(arg)
    flags = HydraFlags(bool(seen.get("--help")), bool(seen.get("--cfg")), seen.get("--package"),
                       bool(seen.get("--resolve")), bool(seen.get("--info")))
    return flags, rest


def print_config(cfg, flags: HydraFlags) -> None:
    """Print ``cfg`` as YAML for ``--cfg``: the ``--package`` part only, interpolations evaluated
    with ``--resolve``.

    Raises:
        UerError: ``--package`` names no key of ``cfg``.
    """
    node = cfg if flags.package is None else OmegaConf.select(cfg, flags.package, default=None)
    if node is None:
        raise UerError(f"--package {flags.package}: no such key; top-level keys: {', '.join(cfg)}")
    if not OmegaConf.is_config(node):
        print(node)
        return
    print(OmegaConf.to_yaml(node, resolve=flags.resolve))


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
