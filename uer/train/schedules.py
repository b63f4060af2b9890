"""Learning-rate schedules: a linear warm-up, then a decay, as multipliers of ``optim.lr`` stepped
once per optimizer step (``torch.optim.lr_scheduler.LambdaLR``).

The shapes and defaults are those of ``transformers.get_scheduler`` (tests/test_schedules.py
compares every step of every name with it); they are written here because importing
``transformers.optimization`` also imports ``peft`` where it is installed (through
``transformers.trainer_utils``), seconds at the start of every run. References: linear decay
(Devlin et al. 2019, BERT), half-cosine and cosine with hard restarts (Loshchilov & Hutter 2017,
SGDR), polynomial decay (You et al. 2020, LAMB), inverse square root (Vaswani et al. 2017).
"""
from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from uer.errors import UerError

POLYNOMIAL_END_LR = 1e-7
"""The absolute learning rate ``polynomial`` decays to (transformers' ``lr_end``), power 1."""


def warmup(step: int, warmup_steps: int) -> float | None:
    """The warm-up multiplier ``step / warmup_steps`` before ``warmup_steps``, else None."""
    return step / max(1, warmup_steps) if step < warmup_steps else None


def progress(step: int, warmup_steps: int, total: int) -> float:
    """Fraction of the decay phase done at ``step`` (0 at the end of warm-up, 1 at ``total``)."""
    return (step - warmup_steps) / max(1, total - warmup_steps)


def constant(step: int, *, warmup_steps: int, total: int, lr: float) -> float:
    """1 after the warm-up."""
    w = warmup(step, warmup_steps)
    return 1.0 if w is None else w


def linear(step: int, *, warmup_steps: int, total: int, lr: float) -> float:
    """Linear decay to 0 at ``total``."""
    w = warmup(step, warmup_steps)
    return max(0.0, (total - step) / max(1, total - warmup_steps)) if w is None else w


def cosine(step: int, *, warmup_steps: int, total: int, lr: float) -> float:
    """Half a cosine from 1 to 0 at ``total`` (0 after)."""
    w = warmup(step, warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress(step, warmup_steps, total)))) if w is None else w


def cosine_with_restarts(step: int, *, warmup_steps: int, total: int, lr: float, cycles: int = 1) -> float:
    """``cycles`` half-cosines from 1 to 0, each restarting at 1 (one cycle: ``cosine``)."""
    w = warmup(step, warmup_steps)
    if w is not None:
        return w
    done = progress(step, warmup_steps, total)
    return 0.0 if done >= 1.0 else 0.5 * (1.0 + math.cos(math.pi * ((cycles * done) % 1.0)))


def polynomial(step: int, *, warmup_steps: int, total: int, lr: float, power: float = 1.0) -> float:
    """From ``lr`` down to :data:`POLYNOMIAL_END_LR` at ``total`` as ``(1 - progress) ** power``."""
    w = warmup(step, warmup_steps)
    if w is not None:
        return w
    end = POLYNOMIAL_END_LR / lr
    if step > total:
        return end
    return (1.0 - end) * (1.0 - progress(step, warmup_steps, total)) ** power + end


def inverse_sqrt(step: int, *, warmup_steps: int, total: int, lr: float) -> float:
    """``sqrt(timescale / (step - warmup_steps + timescale))`` with ``timescale`` = the warm-up
    steps (10,000 without warm-up): 1 at the end of warm-up."""
    w = warmup(step, warmup_steps)
    timescale = warmup_steps or 10_000
    return math.sqrt(timescale / (step - warmup_steps + timescale)) if w is None else w


SCHEDULES = {"constant": constant, "constant_with_warmup": constant, "linear": linear, "cosine": cosine,
             "cosine_with_restarts": cosine_with_restarts, "polynomial": polynomial, "inverse_sqrt": inverse_sqrt}
"""``scheduler.name`` -> multiplier(step, warmup_steps=, total=, lr=)."""


def schedule(optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, total: int) -> LambdaLR:
    """The ``LambdaLR`` of the schedule ``name`` over ``total`` steps after ``warmup_steps``.

    Raises:
        UerError: an unknown name (listing the known ones); ``polynomial`` with ``optim.lr`` at or
            below the learning rate it decays to.
    """
    if name not in SCHEDULES:
        raise UerError(f"scheduler.name={name}; choose one of {', '.join(SCHEDULES)}")
    lr = optimizer.defaults["lr"]
    if name == "polynomial" and lr <= POLYNOMIAL_END_LR:
        raise UerError(f"scheduler.name=polynomial decays to {POLYNOMIAL_END_LR}: optim.lr={lr} must be larger")
    return LambdaLR(optimizer, functools.partial(SCHEDULES[name], warmup_steps=warmup_steps, total=total, lr=lr))
