"""Normalization layers chosen by name, so configs say ``norm: layernorm`` or ``norm: rmsnorm``."""
from __future__ import annotations

from torch import nn

NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, dim: int, eps: float = 1e-12) -> nn.Module:
    """Build a normalization over the last dimension.

    Args:
        kind: ``layernorm`` (Ba et al. 2016, with weight and bias) or ``rmsnorm``
            (Zhang & Sennrich 2019, weight only).
        dim: normalized width D; the module maps (..., D) -> (..., D).
        eps: added to the variance for numerical stability.

    Raises:
        ValueError: ``kind`` is not one of :data:`NORMS`.
    """
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")
