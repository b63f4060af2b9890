"""Optimizers and learning-rate schedules from config."""
from __future__ import annotations

import torch
from torch import nn

from uer.errors import UerError
from uer.train.config import OptimConfig, SchedulerConfig
from uer.train.schedules import schedule


def parameter_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Weight decay on matrices (ndim ≥ 2), none on biases, norms and other vectors (as in BERT's
    AdamWeightDecayOptimizer). Shared (tied) parameters appear once. With ``layer_decay`` < 1, each
    group also carries ``lr_scale`` = layer_decay ** (depth from the top), see :func:`layer_depth`
    (layer-wise learning-rate decay, Clark et al. 2020 "ELECTRA", Appendix A)."""
    num_layers = 1 + max((layer_depth(n, 0) for n, _ in model.named_parameters()), default=0)
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():  # named_parameters() yields a tied parameter once
        if p.requires_grad:
            scale = layer_decay ** (num_layers - layer_depth(name, num_layers)) if layer_decay != 1.0 else 1.0
            groups.setdefault((p.ndim >= 2, scale), []).append(p)
    if layer_decay == 1.0:
        return [{"params": groups.get((True, 1.0), []), "weight_decay": weight_decay},
                {"params": groups.get((False, 1.0), []), "weight_decay": 0.0}]
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), params in sorted(groups.items(), key=lambda kv: (-kv[0][1], not kv[0][0]))]


def layer_depth(name: str, top: int) -> int:
    """Depth of a parameter from the input: 0 for the embedding, i + 1 for ``encoder.layers.{i}``,
    ``top`` for everything above the layers (final norm, decoder, target heads)."""
    if name.startswith(("embedding.", "tgt_embedding.")):
        return 0
    parts = name.split(".")
    if parts[:2] == ["encoder", "layers"] and parts[2].isdigit():
        return int(parts[2]) + 1
    return top


def build_optimizer(model: nn.Module, cfg: OptimConfig, layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019), Adam or SGD over :func:`parameter_groups`; with
    ``layer_decay`` < 1 each group's learning rate is ``optim.lr · lr_scale`` (layer-wise decay).

    ``fused=None`` uses torch's fused (single-kernel) Adam/AdamW wherever the parameters live on a
    device that has it (CPU and CUDA): on CPU it is an order of magnitude faster than the default
    per-tensor loop. Build the optimizer after moving the model to its device.

    Raises:
        UerError: unknown optimizer name or a layer decay outside (0, 1].
    """
    if not 0 < layer_decay <= 1:
        raise UerError(f"layer-wise learning-rate decay must be in (0, 1], got {layer_decay}")
    groups = parameter_groups(model, cfg.weight_decay, layer_decay)
    for group in groups:
        group["lr"] = cfg.lr * group.pop("lr_scale", 1.0)
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
    """The schedule ``scheduler.name`` (:mod:`uer.train.schedules`: linear warm-up to ``optim.lr``,
    then ``linear`` decay to 0, half-``cosine``, ``constant``, ``cosine_with_restarts``,
    ``polynomial`` or ``inverse_sqrt``, as ``transformers.get_scheduler`` defines them) over
    ``max_steps``, stepped once per optimizer step.

    Raises:
        UerError: unknown schedule name or negative warmup.
    """
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * max_steps)
    if warmup < 0:
        raise UerError(f"scheduler warmup must be >= 0, got {warmup}")
    return schedule(optimizer, cfg.name, warmup, max_steps)
