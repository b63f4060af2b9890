"""Checkpoint directories (DESIGN §6): written atomically, loaded without unpickling code.

Layout of ``<output_dir>/checkpoints/step_<N>/``::

    model.safetensors        weights (tied parameters stored once)
    config.yaml              the resolved run config (model, data, optim, scheduler, trainer)
    tokenizer.json, tokenizer_config.json
    state/                   what resuming needs: optimizer.pt, scheduler.pt, rng.pt (tensors and
                             plain containers only, loaded with weights_only=True) and trainer.json
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from uer.errors import UerError

STEP_DIR = re.compile(r"^step_(\d+)$")


def save_weights(model: nn.Module, path: Path) -> None:
    """Write ``model``'s parameters and buffers to a safetensors file (tied tensors once)."""
    save_model(model, str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model`` strictly.

    Raises:
        UerError: the file is missing, corrupt or truncated, or its keys/shapes differ from the model's
            (the message lists what is missing and what is unexpected).
    """
    if not Path(path).is_file():
        raise UerError(f"{path}: no such weights file")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError) as e:
        raise UerError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
        raise UerError(f"{path}: weights do not fit the model ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise UerError(f"{path}: weights do not match the model; missing {sorted(missing)[:5]}, "
                       f"unexpected {sorted(unexpected)[:5]}")


def save_checkpoint(directory: Path, model: nn.Module, config: DictConfig, tokenizer, state: dict | None) -> Path:
    """Write a complete checkpoint to ``directory`` atomically: everything goes into a hidden
    sibling temp dir that is renamed into place last, so a crash never leaves a directory that
    looks complete. An existing ``directory`` is replaced.

    Args:
        state: ``{"optimizer": ..., "scheduler": ..., "rng": ..., "trainer": json-able dict}`` or
            None for a weights-only export.
    """
    directory = Path(directory)
    tmp = directory.parent / f".tmp-{directory.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    OmegaConf.save(config, tmp / "config.yaml", resolve=True)
    if tokenizer is not None:
        tokenizer.save(tmp)
    if state is not None:
        (tmp / "state").mkdir()
        for key in ("optimizer", "scheduler", "rng"):
            torch.save(state[key], tmp / "state" / f"{key}.pt")
        (tmp / "state" / "trainer.json").write_text(json.dumps(state["trainer"], indent=1))
    if directory.exists():
        old = directory.parent / f".old-{directory.name}"
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first (temp dirs ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def prune_checkpoints(output_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints."""
    for path in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(path)


def load_state(directory: Path) -> dict:
    """Read ``state/`` of a checkpoint (tensors and plain containers only).

    Raises:
        UerError: the checkpoint has no complete training state.
    """
    state_dir = Path(directory) / "state"
    try:
        state = {key: torch.load(state_dir / f"{key}.pt", weights_only=True)
                 for key in ("optimizer", "scheduler", "rng")}
        state["trainer"] = json.loads((state_dir / "trainer.json").read_text())
    except (OSError, RuntimeError, ValueError) as e:
        raise UerError(f"{directory}: no resumable training state ({str(e).splitlines()[0]})") from None
    return state


def load_config(directory: Path) -> DictConfig:
    """The ``config.yaml`` of a checkpoint.

    Raises:
        UerError: missing or unreadable.
    """
    path = Path(directory) / "config.yaml"
    if not path.is_file():
        raise UerError(f"{directory}: not a uer checkpoint (no config.yaml)")
    try:
        return OmegaConf.load(path)
    except Exception as e:
        raise UerError(f"{path}: unreadable config ({str(e).splitlines()[0]})") from None
