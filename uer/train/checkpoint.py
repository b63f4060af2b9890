"""Checkpoint directories (DESIGN §6): written atomically, loaded without unpickling code.

Layout of ``<output_dir>/checkpoints/step_<N>/``::

    model.safetensors        weights (tied parameters stored once); a LoRA run on a named base
                             writes adapter_model.safetensors instead (uer.models.adapter_checkpoint)
    config.yaml              the resolved run config (model, data, optim, scheduler, trainer)
    tokenizer.json, tokenizer_config.json
    state/                   what resuming needs: optimizer.pt, scheduler.pt, rng.pt (tensors and
                             plain containers only, loaded with weights_only=True) and trainer.json;
                             rng_<rank>.pt per further process; under FSDP2 dcp/ holds the model and
                             optimizer shards (torch.distributed.checkpoint) instead of optimizer.pt.
                             Only the newest ``trainer.keep_state`` checkpoints keep it (the optimizer
                             state is twice the weights): older ones become weights-only once a newer
                             one is published (`prune_checkpoints`).

This module adds the training state to the model files of :mod:`uer.models.pretrained` (weights,
config, tokenizer, the atomic rename); its ``load_config`` and ``load_weights`` are re-exported here
for the training code that resumes.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from uer.errors import UerError
from uer.models.adapter_checkpoint import BASE_KEY, save_adapter
from uer.models.pretrained import load_config, load_weights, publish, remove, save_pretrained, write_error
from uer.train import distributed

__all__ = ["drop_state", "is_resumable", "list_checkpoints", "load_config", "load_sharded", "load_state",
           "load_weights", "prune_checkpoints", "rng_file", "save_checkpoint"]

STEP_DIR = re.compile(r"^step_(\d+)$")
DROPPED_STATE = ".state-dropped"
"""What ``state/`` is renamed to inside a checkpoint made weights-only, before it is deleted."""
SAVE_DELAY_ENV = "UER_TEST_SAVE_DELAY"
"""Seconds to pause inside a checkpoint write, after the files are in the temp dir and before the
rename that completes it: the point where the crash-safety tests kill a run."""


def save_checkpoint(directory: Path, model: nn.Module, config: DictConfig, tokenizer, state: dict | None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write a complete checkpoint to ``directory`` atomically: everything goes into a hidden
    sibling temp dir (``.tmp-<name>``), files are fsynced, and the dir is renamed into place last,
    so a crash at any moment never leaves a directory that :func:`list_checkpoints` takes for
    complete. An existing ``directory`` is replaced.

    In a multi-process run every rank calls this (it is collective: the ranks agree after each
    phase, so a failure on one rank raises on all): rank 0 writes the shared files, each rank its own
    ``state/rng_<rank>.pt``. For a model sharded by FSDP2, model and optimizer shards go to
    ``state/dcp/`` with ``torch.distributed.checkpoint`` (pass ``optimizer``; ``state["optimizer"]``
    is unused) and rank 0 gathers the full weights into ``model.safetensors``.

    Args:
        state: ``{"optimizer": ..., "scheduler": ..., "rng": ..., "trainer": json-able dict}`` or
            None for a weights-only export.

    Raises:
        UerError: a write failed, e.g. the disk is full (``ENOSPC``): one line naming the checkpoint
            and the OS error, on every rank. The temp dir is removed; ``directory`` and every other
            checkpoint are left as they were.
    """
    directory = Path(directory)
    tmp = directory.parent / f".tmp-{directory.name}"
    main = distributed.is_main()
    where = f"checkpoint {directory}"
    try:
        distributed.agree(attempt(where, lambda: stage(tmp, state is not None) if main else None))
        full = None
        if distributed.is_sharded(model):  # FSDP2 only: torch.distributed.checkpoint costs seconds to import
            full = save_shards(tmp, model, optimizer, state, where)
        distributed.agree(attempt(where, lambda: write_files(tmp, model, config, tokenizer, state, full)))
        if os.environ.get(SAVE_DELAY_ENV):
            time.sleep(float(os.environ[SAVE_DELAY_ENV]))
        distributed.agree(attempt(where, lambda: publish(tmp, directory) if main else None))
    except BaseException:
        if main:
            remove(tmp)
        raise
    return directory


def stage(tmp: Path, with_state: bool) -> None:
    """Create the empty temp dir ``tmp`` (with ``state/`` when ``with_state``), removing one left by a crash."""
    remove(tmp)
    (tmp / "state" if with_state else tmp).mkdir(parents=True)


def save_shards(tmp: Path, model: nn.Module, optimizer, state: dict | None, where: str) -> dict:
    """FSDP2: write the model and optimizer shards to ``tmp/state/dcp`` (collective; skipped for a
    weights-only export) and return the full weights, gathered to the CPU of rank 0.

    Raises:
        UerError: DCP failed to write (raised on every rank, as DCP reports failures to all).
    """
    import torch.distributed.checkpoint as dcp  # lazy: only sharded (FSDP2) checkpoints use DCP
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if state is not None:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        try:
            dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp / "state" / "dcp"))
        except Exception as e:  # noqa: BLE001 - DCP wraps each rank's failure in its own types
            raise write_error(where, e) from None
    return full


def write_files(tmp: Path, model: nn.Module, config: DictConfig, tokenizer, state: dict | None,
                full: dict | None) -> None:
    """This rank's files of the checkpoint in ``tmp``: on rank 0 weights, config, tokenizer and
    ``state/`` (optimizer unless sharded, scheduler, trainer.json); on every rank its RNG state."""
    if distributed.is_main():
        (save_adapter if config.get(BASE_KEY) else save_pretrained)(tmp, model, config, tokenizer, full)
        if state is not None:
            for key in ("scheduler",) if full is not None else ("optimizer", "scheduler"):
                save_tensors(state[key], tmp / "state" / f"{key}.pt")
            (tmp / "state" / "trainer.json").write_text(json.dumps(state["trainer"], indent=1))
    if state is not None:
        save_tensors(state["rng"], tmp / "state" / rng_file(distributed.rank()))


def save_tensors(obj, path: Path) -> None:
    """``torch.save`` through a Python file object, so a failed write keeps its OSError (ENOSPC ...)
    in the exception chain (a path gives only ``unexpected pos``)."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def attempt(where: str, fn) -> str | None:
    """Call ``fn()``; None if it succeeded, else the one-line message of its failure (see
    :func:`uer.models.pretrained.write_error`), for :func:`uer.train.distributed.agree`."""
    try:
        fn()
    except UerError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - safetensors, tokenizers and torch raise their own types
        return str(write_error(where, e))
    return None


def rng_file(rank: int) -> str:
    """Name of rank ``rank``'s RNG state file in ``state/`` (``rng.pt`` for rank 0)."""
    return "rng.pt" if rank == 0 else f"rng_{rank}.pt"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first: directories named
    ``step_<N>`` (temp dirs ignored; a symbolic link is never taken for a checkpoint, so neither
    resumed from nor pruned)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := STEP_DIR.match(p.name)) and p.is_dir() and not p.is_symlink()]
    return [p for _, p in sorted(found)]


def prune_checkpoints(output_dir: Path, keep_last: int, keep_state: int = 1) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (real directories only, see
    :func:`list_checkpoints`; links inside them are unlinked, never followed), and make all but the
    newest ``keep_state`` resumable ones weights-only (:func:`drop_state`). The newest resumable
    checkpoint always keeps its state, whatever ``keep_state`` (0 included) says: it is what
    ``trainer.resume=auto`` continues from."""
    for path in list_checkpoints(output_dir)[:-keep_last]:
        remove(path)
    resumable = [path for path in list_checkpoints(output_dir) if is_resumable(path)]
    for path in resumable[:-max(keep_state, 1)]:
        drop_state(path)


def is_resumable(directory: Path) -> bool:
    """Whether a checkpoint holds training state (``state/trainer.json``, written with the rest)."""
    return (Path(directory) / "state" / "trainer.json").is_file()


def drop_state(directory: Path) -> None:
    """Remove ``state/`` of a checkpoint, keeping its weights, config and tokenizer. The directory is
    first renamed to ``.state-dropped`` (atomic: the checkpoint holds either its whole state or
    none), then deleted; one left by a crash is deleted on the next call."""
    doomed = Path(directory) / DROPPED_STATE
    remove(doomed)
    state = Path(directory) / "state"
    if state.is_dir() and not state.is_symlink():
        os.replace(state, doomed)
        remove(doomed)


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
