"""Checkpoint directories (DESIGN §6): written atomically, loaded without unpickling code.

Layout of ``<output_dir>/checkpoints/step_<N>/``::

    model.safetensors        weights (tied parameters stored once)
    config.yaml              the resolved run config (model, data, optim, scheduler, trainer)
    tokenizer.json, tokenizer_config.json
    state/                   what resuming needs: optimizer.pt, scheduler.pt, rng.pt (tensors and
                             plain containers only, loaded with weights_only=True) and trainer.json;
                             rng_<rank>.pt per further process; under FSDP2 dcp/ holds the model and
                             optimizer shards (torch.distributed.checkpoint) instead of optimizer.pt

This module adds the training state to the model files of :mod:`uer.models.pretrained` (weights,
config, tokenizer, the atomic rename); its ``load_config`` and ``load_weights`` are re-exported here
for the training code that resumes.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from uer.errors import UerError
from uer.models.pretrained import load_config, load_weights, publish, save_pretrained
from uer.train import distributed

__all__ = ["list_checkpoints", "load_config", "load_sharded", "load_state", "load_weights", "prune_checkpoints",
           "rng_file", "save_checkpoint"]

STEP_DIR = re.compile(r"^step_(\d+)$")
SAVE_DELAY_ENV = "UER_TEST_SAVE_DELAY"
"""Seconds to pause inside a checkpoint write, after the files are in the temp dir and before the
rename that completes it: the point where the crash-safety tests kill a run."""


def save_checkpoint(directory: Path, model: nn.Module, config: DictConfig, tokenizer, state: dict | None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write a complete checkpoint to ``directory`` atomically: everything goes into a hidden
    sibling temp dir (``.tmp-<name>``), files are fsynced, and the dir is renamed into place last,
    so a crash at any moment never leaves a directory that :func:`list_checkpoints` takes for
    complete. An existing ``directory`` is replaced.

    In a multi-process run every rank calls this (it is collective, with barriers around the
    rename): rank 0 writes the shared files, each rank its own ``state/rng_<rank>.pt``. For a model
    sharded by FSDP2, model and optimizer shards go to ``state/dcp/`` with
    ``torch.distributed.checkpoint`` (pass ``optimizer``; ``state["optimizer"]`` is unused) and rank
    0 gathers the full weights into ``model.safetensors``.

    Args:
        state: ``{"optimizer": ..., "scheduler": ..., "rng": ..., "trainer": json-able dict}`` or
            None for a weights-only export.
    """
    directory = Path(directory)
    tmp = directory.parent / f".tmp-{directory.name}"
    main = distributed.is_main()
    if main:
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "state").mkdir(parents=True)
    distributed.barrier()
    full = None
    if distributed.is_sharded(model):  # FSDP2 only: torch.distributed.checkpoint costs seconds to import
        import torch.distributed.checkpoint as dcp  # lazy: only sharded (FSDP2) checkpoints use DCP
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if state is not None:
            model_sd, optim_sd = get_state_dict(model, optimizer)
            dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp / "state" / "dcp"))
    if main:
        save_pretrained(tmp, model, config, tokenizer, full)
        if state is not None:
            keys = ("scheduler",) if full is not None else ("optimizer", "scheduler")
            for key in keys:
                torch.save(state[key], tmp / "state" / f"{key}.pt")
            (tmp / "state" / "trainer.json").write_text(json.dumps(state["trainer"], indent=1))
    if state is not None:
        torch.save(state["rng"], tmp / "state" / rng_file(distributed.rank()))
    if os.environ.get(SAVE_DELAY_ENV):
        time.sleep(float(os.environ[SAVE_DELAY_ENV]))
    distributed.barrier()
    if main:
        publish(tmp, directory)
    distributed.barrier()
    return directory


def rng_file(rank: int) -> str:
    """Name of rank ``rank``'s RNG state file in ``state/`` (``rng.pt`` for rank 0)."""
    return "rng.pt" if rank == 0 else f"rng_{rank}.pt"


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


def load_state(directory: Path, rank: int = 0) -> dict:
    """Read ``state/`` of a checkpoint (tensors and plain containers only): scheduler, trainer,
    ``optimizer`` (None when the optimizer is sharded in ``state/dcp/``) and this ``rank``'s
    ``rng`` (None when the checkpoint was written by fewer processes). Only reads: whether the
    content fits a run is :func:`uer.train.state_check.check_state`.

    Raises:
        UerError: a state file is missing, unreadable (truncated, not a torch file, not JSON) or holds
            objects other than tensors and plain containers; the line names the file.
    """
    state_dir = Path(directory) / "state"
    sharded = (state_dir / "dcp").is_dir()
    state = {"optimizer": None, "rng": None}
    for key in ("scheduler",) + (() if sharded else ("optimizer",)) + ("rng",):
        path = state_dir / (rng_file(rank) if key == "rng" else f"{key}.pt")
        if key != "rng" or rank == 0 or path.is_file():
            state[key] = read_state_file(path, lambda p: torch.load(p, weights_only=True))
    state["trainer"] = read_state_file(state_dir / "trainer.json", lambda p: json.loads(p.read_text()))
    return state


def read_state_file(path: Path, read):
    """``read(path)``, its failures turned into one line naming ``path``.

    Raises:
        UerError: missing or unreadable, or (``torch.load(weights_only=True)``) holding other objects
            than tensors and plain containers, which are never unpickled.
    """
    if not path.is_file():
        raise UerError(f"{path}: missing; no resumable training state")
    try:
        return read(path)
    except pickle.UnpicklingError:  # weights_only=True met something else: never unpickle it
        raise UerError(f"{path}: holds objects other than tensors and plain containers; refusing to load it") from None
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError, IndexError, AttributeError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UerError(f"{path}: not readable, no resumable training state ({reason})") from None


def load_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load the model and optimizer shards of ``directory/state/dcp`` (written by
    :func:`save_checkpoint` under FSDP2) into ``model`` and ``optimizer``, resharded to the current
    processes (any number; also one plain process).

    Raises:
        UerError: a shard is missing or does not fit (the metadata is checked before, by
            :func:`uer.train.state_check.check_dcp`).
    """
    import torch.distributed.checkpoint as dcp  # FSDP2 only, and seconds to import: loaded when used
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict  # lazy: as dcp above

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    shards = Path(directory) / "state" / "dcp"
    try:
        dcp.load(state, checkpoint_id=str(shards))
    except Exception as e:  # noqa: BLE001 - DCP wraps each rank's failure in its own types
        raise UerError(f"{shards}: the shards cannot be loaded ({(str(e).splitlines() or [type(e).__name__])[0]})") \
            from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
