"""Optimizers and learning-rate schedules from config."""
from __future__ import annotations

import torch
from torch import nn
from transformers import get_scheduler

from uer.errors import UerError
from uer.train.config import OptimConfig, SchedulerConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight decay on matrices (ndim ≥ 2), none on biases, norms and other vectors
    (as in BERT's AdamWeightDecayOptimizer). Shared (tied) parameters appear once."""
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a tied parameter once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019), Adam or SGD over :func:`parameter_groups`.

    ``fused=None`` uses torch's fused (single-kernel) Adam/AdamW wherever the parameters live on a
    device that has it (CPU and CUDA): on CPU it is an order of magnitude faster than the default
    per-tensor loop. Build the optimizer after moving the model to its device.

    Raises:
        UerError: unknown optimizer name.
    """
    groups = parameter_groups(model, cfg.weight_decay)
    fused = cfg.fused
    if fused is None:
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())
    extra = {"fused": True} if fused else {}
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **extra)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **extra)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise UerError(f"optim.name={cfg.name}; choose adamw, adam or sgd")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, max_steps: int):
    """A ``transformers.get_scheduler`` schedule stepped once per optimizer step: linear warmup to
    ``optim.lr``, then linear decay to 0 (``linear``), half-cosine (``cosine``) or flat
    (``constant``, which warms up too).

    Raises:
        UerError: unknown schedule name or negative warmup.
    """
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * max_steps)
    if warmup < 0:
        raise UerError(f"scheduler warmup must be >= 0, got {warmup}")
    name = {"constant": "constant_with_warmup"}.get(cfg.name, cfg.name)
    try:
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    except ValueError as e:
        raise UerError(f"scheduler.name={cfg.name}: {str(e).splitlines()[0]}") from None
