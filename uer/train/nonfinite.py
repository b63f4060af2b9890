"""The ``trainer.on_nonfinite`` policy: what a step with a non-finite loss or gradient norm does, and
the checks that keep non-finite weights out of every checkpoint.

``stop``: the step is taken, its number remembered on the device (no host sync per step), and the run
raises at the next point where values are read anyway (a log step, a save, an evaluation, the end),
naming the first bad step and the last good checkpoint; a non-finite evaluation loss stops it too.
``skip``: the step is dropped (one host read per step) and counted; ``trainer.max_consecutive_skips``
skipped steps in a row stop the run. Under both, what a checkpoint would hold is checked before it is
written (:meth:`NonFiniteGuard.check_weights`): a loss can stay finite while some weight is not (a
parameter the batch never reads, a step that overflows), and broken weights are never saved."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from uer.errors import UerError
from uer.train import distributed
from uer.train.checkpoint import list_checkpoints
from uer.train.config import TrainerConfig

log = logging.getLogger("uer")
NO_STEP = 2**62


class NonFiniteError(UerError):
    """A non-finite loss or gradient norm under ``trainer.on_nonfinite=stop``, or too many skipped steps in a
    row under ``skip``."""


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the floating tensors of ``model.state_dict()`` (what a checkpoint saves) that hold a
    NaN or an infinity, the same list on every rank.

    Cost: one fused max-abs reduction over the local tensors (``torch._foreach_norm`` with
    ``ord=inf``, which propagates NaN and, unlike the 2-norm, cannot overflow for finite values; the
    local shards under FSDP2), one all-reduce of a flag per tensor and one host read: about one
    read of the weights, paid only where a checkpoint is written or an evaluation starts.
    """
    named = [(k, v.to_local() if hasattr(v, "to_local") else v)  # FSDP2: this rank's shard of a DTensor
             for k, v in model.state_dict().items() if v.is_floating_point()]
    if not named:
        return []
    live = [i for i, (_, v) in enumerate(named) if v.numel()]  # an empty shard holds nothing to check
    flags = torch.zeros(len(named), dtype=torch.int32, device=named[0][1].device)
    if live:
        norms = torch._foreach_norm([named[i][1] for i in live], ord=math.inf, dtype=torch.float32)
        flags[live] = (~torch.isfinite(torch.stack(norms))).int().to(flags.device)
    distributed.all_reduce_(flags, distributed.dist.ReduceOp.MAX)
    return [named[i][0] for i in flags.nonzero().flatten().tolist()]


def last_checkpoint(output_dir: Path) -> str:
    """The newest complete checkpoint in ``output_dir``, or ``none``."""
    found = list_checkpoints(output_dir)
    return str(found[-1]) if found else "none"


class NonFiniteGuard:
    """Applies ``cfg.on_nonfinite`` on every rank alike.

    Attributes:
        skipped: steps dropped so far under ``skip`` (saved in checkpoints).
        in_a_row: steps dropped since the last step taken.
    """

    def __init__(self, cfg: TrainerConfig, device: torch.device, output_dir: Path):
        self.policy, self.limit, self.output_dir = cfg.on_nonfinite, cfg.max_consecutive_skips, output_dir
        self.first_bad = torch.tensor(NO_STEP, device=device)  # first bad step (stop)
        self.skipped, self.in_a_row = 0, 0

    def drops(self, bad: torch.Tensor) -> bool:
        """Whether the step is dropped: under ``skip``, when ``bad`` (a bool scalar tensor) holds on
        any rank. One host read under ``skip``, none under ``stop``."""
        return self.policy == "skip" and bool(distributed.all_reduce_(bad.int(), distributed.dist.ReduceOp.MAX))

    def record(self, bad: torch.Tensor, step: int) -> None:
        """Remember ``step`` (1-based) as the first bad one if ``bad`` and none was before (on the
        device); a taken step resets the count of skips in a row."""
        self.first_bad = torch.where(bad & (self.first_bad == NO_STEP), step, self.first_bad)
        self.in_a_row = 0

    def check(self) -> None:
        """Raise (on every rank) if a step since the start met a non-finite value under ``stop``.

        Raises:
            NonFiniteError: naming the first bad step and the last good checkpoint.
        """
        if self.policy != "stop":
            return
        bad = int(distributed.all_reduce_(self.first_bad.clone(), distributed.dist.ReduceOp.MIN))
        if bad != NO_STEP:
            raise NonFiniteError(f"step {bad}: non-finite loss or gradient norm (trainer.on_nonfinite=stop); "
                                 f"last good checkpoint: {last_checkpoint(self.output_dir)}")

    def check_weights(self, model: nn.Module, step: int) -> None:
        """Raise (on every rank, under either policy) if ``model``'s weights hold a non-finite value;
        called before anything of a checkpoint is written (see :func:`nonfinite_tensors`).

        Raises:
            NonFiniteError: naming ``step``, the first bad tensors and the last good checkpoint.
        """
        bad = nonfinite_tensors(model)
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise NonFiniteError(f"step {step}: non-finite weights in {', '.join(bad[:3])}{more} "
                                 f"(trainer.on_nonfinite={self.policy}); not saved; "
                                 f"last good checkpoint: {last_checkpoint(self.output_dir)}")

    def check_eval(self, result: dict[str, float], step: int) -> None:
        """Under ``stop``, raise if an evaluation loss (``loss`` or ``<target>/loss`` of ``result``, the
        same on every rank) is non-finite; under ``skip``, log it.

        Raises:
            NonFiniteError: naming ``step``, the loss and the last good checkpoint.
        """
        bad = sorted((k for k, v in result.items() if (k == "loss" or k.endswith("/loss")) and not math.isfinite(v)),
                     key=lambda k: k != "loss")  # the total loss first
        if not bad:
            return
        if self.policy == "stop":
            raise NonFiniteError(f"step {step}: non-finite evaluation {bad[0]}={result[bad[0]]} "
                                 f"(trainer.on_nonfinite=stop); last good checkpoint: "
                                 f"{last_checkpoint(self.output_dir)}")
        log.warning("step %d: non-finite evaluation %s=%s (trainer.on_nonfinite=skip)", step, bad[0], result[bad[0]])

    def count_skip(self, step: int) -> None:
        """Count and log the dropped step ``step`` (1-based).

        Raises:
            NonFiniteError: ``trainer.max_consecutive_skips`` steps in a row were dropped (0 = no limit).
        """
        self.skipped += 1
        self.in_a_row += 1
        log.warning("step %d: non-finite loss or gradient norm; step skipped (%d so far, trainer.on_nonfinite=skip)",
                    step, self.skipped)
        if self.limit and self.in_a_row >= self.limit:
            raise NonFiniteError(f"step {step}: {self.in_a_row} batches in a row gave a non-finite loss or "
                                 f"gradient norm (trainer.max_consecutive_skips={self.limit}); the weights are "
                                 f"likely broken; last good checkpoint: {last_checkpoint(self.output_dir)}")
