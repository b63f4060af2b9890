"""Many processes (DESIGN §5): the process group from torchrun's environment, DDP or FSDP2 wrapping,
agreement on errors and on stop requests, and the few collectives the trainer needs.

Launch is ``torchrun --nproc_per_node=N -m uer.cli.pretrain ...``: torchrun sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; without them (or with
``WORLD_SIZE=1``) everything here is a no-op and a run is one plain process. The backend is gloo on
CPU and NCCL on CUDA. References: PyTorch DDP (Li et al. 2020, "PyTorch Distributed"), FSDP2
(``torch.distributed.fsdp.fully_shard``, Zhao et al. 2023 for FSDP).
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Self

import torch
import torch.distributed as dist
from torch import nn

from uer.errors import UerError
from uer.train.config import STRATEGIES

log = logging.getLogger("uer")


def world_size() -> int:
    """Number of processes of the run (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on rank 0, the process that writes logs, metrics and the files every rank shares."""
    return rank() == 0


_CONTROL: dist.ProcessGroup | None = None
"""A gloo group for small host-side agreements (errors, stop requests) that must not touch the GPU."""

_HANDED: deque[torch.Tensor] = deque(maxlen=64)
"""The tensors of this module's latest collectives, each private to it (nothing else refers to them),
kept until :func:`shutdown` has seen the backend's threads let go of them (see :func:`_settle`)."""


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (once; idempotent) and return this rank's device:
    ``cuda:<LOCAL_RANK>`` for a CUDA ``device``, else ``device``. One process: returns ``device``."""
    global _CONTROL
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                device_id=device if device.type == "cuda" else None)
        _CONTROL = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
        log.info("rank %d of %d joined the %s process group", rank(), world_size(), backend)
    return device


def _settle(timeout_s: float = 30.0) -> None:
    """Wait, the GIL released, until the process group's threads have dropped the tensors of the
    latest collectives.

    Why: gloo finishes a collective on a worker thread, which releases the work's tensors after the
    caller's ``wait()`` has returned, and releasing a tensor Python knows needs the GIL. The process
    group's destructor (run when the last reference goes, e.g. with the DDP wrapper) joins those
    threads while holding the GIL, so a release still pending then deadlocks the process at exit
    (torch 2.13: ``~ProcessGroupGloo`` in ``thread::join``, a worker in ``~AsyncAllgatherWork``
    waiting for the GIL). A tensor only this module holds has use count 1 once the thread let go.
    """
    deadline = time.monotonic() + timeout_s
    while any(t._use_count() > 1 for t in _HANDED) and time.monotonic() < deadline:
        time.sleep(0.001)
    _HANDED.clear()


def shutdown() -> None:
    """Leave the process group (after the last collective), once its threads hold none of our tensors."""
    global _CONTROL
    if dist.is_initialized():
        _settle()
        dist.destroy_process_group()
    _CONTROL = None


def _all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's ``data``, in rank order (two all-gathers on the control group: sizes, then the
    zero-padded bytes), through tensors private to this module (:data:`_HANDED`)."""
    world = world_size()
    size = torch.tensor([len(data)], dtype=torch.long)
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
    dist.all_gather(sizes, size, group=_CONTROL)
    lengths = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8)
    padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else 0
    gathered = [torch.zeros(max(lengths), dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(gathered, padded, group=_CONTROL)
    _HANDED.extend([size, *sizes, padded, *gathered])
    return [bytes(g[:n].tolist()) for g, n in zip(gathered, lengths)]


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if dist.is_initialized():
        dist.barrier(group=_CONTROL)


def agree(error: str | None) -> None:
    """Every rank passes its own error message (or None); if any rank has one, every rank raises
    :class:`UerError` with the lowest failing rank's message, so one rank's bad input never leaves
    the others waiting in a collective."""
    if dist.is_initialized():  # an error is never empty: b"" stands for None
        errors = _all_gather_bytes((error or "").encode("utf-8"))
        error = next((e.decode("utf-8") for e in errors if e), None)
    if error is not None:
        raise UerError(error)


def main_first(fn: Callable[[], object]) -> object:
    """Run ``fn`` on rank 0, then on the other ranks (e.g. building a dataset cache that the others
    then read); a :class:`UerError` anywhere is raised on every rank (see :func:`agree`)."""
    result, error = None, None
    for turn in (True, False):
        if is_main() == turn:
            try:
                result = fn()
            except UerError as e:
                error = str(e)
        agree(error)
    return result


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (a host-side all-reduce on the gloo
    control group)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CONTROL)
    _HANDED.append(t)
    return bool(t.item())


def all_reduce_(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce ``tensor`` in place over all ranks (on its device's group); returns it. The collective
    runs on a private copy (:data:`_HANDED`; these are small tensors: metrics, flags)."""
    if dist.is_initialized():
        private = tensor.clone()
        dist.all_reduce(private, op=op)
        tensor.copy_(private)
        _HANDED.append(private)
    return tensor


def wrap(model: nn.Module, strategy: str, device: torch.device) -> nn.Module:
    """Prepare ``model`` (already on ``device``) for data parallel training.

    ``ddp``: returns ``DistributedDataParallel(model)`` (its ``.module`` is ``model``). ``fsdp2``:
    shards ``model`` in place with ``fully_shard``, each distinct layer of every ``nn.ModuleList``
    (encoder layers; skipped when its owner shares one layer across depth, as ALBERT) and then the
    root, and returns ``model``. Build the optimizer after this call: FSDP2 replaces parameters by
    sharded ``DTensor`` parameters. One process: returns ``model`` unchanged.

    Raises:
        UerError: an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise UerError(f"trainer.strategy={strategy}; choose one of {', '.join(STRATEGIES)}")
    if not dist.is_initialized():
        return model
    if strategy == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard  # lazy: FSDP2 only under trainer.strategy=fsdp2

    for owner in model.modules():
        if getattr(owner, "share_layers", False):
            continue
        for child in owner.children():
            if isinstance(child, nn.ModuleList):
                for layer in child:
                    fully_shard(layer)
    fully_shard(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 modules are their own)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    """True for a module sharded by FSDP2's ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule  # lazy: as fully_shard above

    return isinstance(model, FSDPModule)


class StopRequest:
    """Turns SIGTERM (preemption; torchrun forwards it to every worker) into a flag the training
    loop polls between steps, so the run saves a checkpoint and exits instead of dying mid-write.

    Use as a context manager around the loop; ``requested()`` is agreed over ranks (every rank
    stops after the same step). Outside the main thread, no handler is installed.
    """

    def __init__(self):
        self.flag, self.previous = False, None

    def __enter__(self) -> Self:
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.flag = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def requested(self) -> bool:
        """Whether any rank received SIGTERM (one tiny host all-reduce per call when distributed)."""
        return any_rank(self.flag)


def all_reduce_sums(sums) -> None:
    """Add the (sum, count) pairs of a :class:`uer.train.metrics.MetricSums` over ranks, in place
    and in one collective, so means over processes are exact. Every rank must hold the same names."""
    if not dist.is_initialized() or not sums.sums:
        return
    pairs = list(sums.sums.values())
    flat = all_reduce_(torch.stack([torch.stack(p) for p in pairs]))
    for pair, row in zip(pairs, flat):
        pair[0], pair[1] = row[0], row[1]
