"""Callbacks: task behaviour plugged into the one :class:`~uer.train.trainer.Trainer` loop without
trainer branches (DESIGN §5): keeping the best checkpoint, early stopping, freezing the encoder.

A callback subclasses :class:`Callback` and overrides the hooks it needs. Hooks run on every rank
(a run's callbacks must reach the same decisions everywhere: they see the same all-reduced
evaluation results and the same step)."""
from __future__ import annotations

import logging

from torch import nn

from uer.train.checkpoint import save_checkpoint

log = logging.getLogger("uer")


class Callback:
    """No-op hooks of the training loop; subclasses override what they need.

    Attributes:
        should_stop: set to True to end the run after the current step (checked before each step;
            the run then writes its final checkpoint as a finished one does).
    """

    should_stop: bool = False

    def on_step_start(self, trainer) -> None:
        """Called before each optimizer step, with ``trainer.step`` the number of finished steps."""

    def on_evaluate(self, trainer, result: dict[str, float]) -> None:
        """Called after each evaluation with its metrics (loss, target and evaluator metrics),
        before they are logged."""


class BestMetric(Callback):
    """Tracks the best value (higher is better) of one evaluation metric: ``best`` is the (step,
    value) of the best evaluation so far, ``stale`` the number of evaluations since it."""

    def __init__(self, metric: str):
        self.metric = metric
        self.best: tuple[int, float] | None = None
        self.stale = 0

    def improved(self, trainer, result: dict[str, float]) -> bool:
        """Update ``best`` and ``stale`` with ``result``; True when it is a new best.

        Raises:
            KeyError: the metric is not among the evaluation's metrics (the message lists them).
        """
        if self.metric not in result:
            raise KeyError(f"best metric {self.metric!r} is not an evaluation metric; have {sorted(result)}")
        value = result[self.metric]
        if self.best is None or value > self.best[1]:
            self.best, self.stale = (trainer.step, value), 0
            return True
        self.stale += 1
        return False


class BestCheckpoint(BestMetric):
    """Writes the weights of each evaluation that improves ``metric`` (higher is better) to
    ``<output_dir>/best``: a weights-only checkpoint (model, config, tokenizer; no training state)."""

    def on_evaluate(self, trainer, result: dict[str, float]) -> None:
        if self.improved(trainer, result):
            save_checkpoint(trainer.output_dir / "best", trainer.model, trainer.run_config, trainer.tokenizer, None)
            log.info("step %d: best %s=%.4f so far, saved to %s", trainer.step, self.metric, self.best[1],
                     trainer.output_dir / "best")


class EarlyStopping(BestMetric):
    """Stops the run after ``patience`` (>= 1) evaluations in a row without an improvement of
    ``metric`` (higher is better) on the best so far (Prechelt 1998, "Early stopping — but when?")."""

    def __init__(self, metric: str, patience: int):
        if patience < 1:
            raise ValueError(f"early stopping patience must be >= 1, got {patience}")
        super().__init__(metric)
        self.patience = patience

    def on_evaluate(self, trainer, result: dict[str, float]) -> None:
        if not self.improved(trainer, result) and self.stale >= self.patience:
            self.should_stop = True
            log.info("early stop at step %d: %s has not improved on %.4f (step %d) for %d evaluations",
                     trainer.step, self.metric, self.best[1], self.best[0], self.stale)


class EncoderFreezer(Callback):
    """Keeps the embedding and encoder frozen (no gradient, no update) for the first ``steps``
    optimizer steps, so a fresh task head settles before it moves the pretrained weights (Howard &
    Ruder 2018, "ULMFiT", gradual unfreezing).

    The state is a function of ``trainer.step`` alone, so a resumed run agrees with an unbroken one.
    Frozen parameters get no gradient, so Adam(W) skips them entirely (moments and weight decay).

    Args:
        model: the unwrapped model whose parameters named ``prefixes...`` are frozen.
        steps: optimizer steps to keep them frozen.
    """

    def __init__(self, model: nn.Module, steps: int, prefixes: tuple[str, ...] = ("embedding.", "encoder.")):
        self.steps = steps
        self.params = [p for n, p in model.named_parameters() if n.startswith(prefixes) and p.requires_grad]

    def on_step_start(self, trainer) -> None:
        frozen = trainer.step < self.steps
        for p in self.params:
            p.requires_grad_(not frozen)
