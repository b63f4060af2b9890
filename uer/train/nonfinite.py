"""The ``trainer.on_nonfinite`` policy: what a step with a non-finite loss or gradient norm does.

``stop``: the step is taken, its number remembered on the device (no host sync per step), and the run
raises at the next point where values are read anyway (a log step, a save, an evaluation, the end),
naming the first bad step and the last good checkpoint. ``skip``: the step is dropped (one host read
per step) and counted; ``trainer.max_consecutive_skips`` skipped steps in a row stop the run."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from uer.errors import UerError
from uer.train import distributed
from uer.train.checkpoint import list_checkpoints
from uer.train.config import TrainerConfig

log = logging.getLogger("uer")
NO_STEP = 2**62


class NonFiniteError(UerError):
    """A non-finite loss or gradient norm under ``trainer.on_nonfinite=stop``, or too many skipped steps in a
    row under ``skip``."""


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
