"""Normalization layers over the last dimension: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang &
Sennrich 2019) as uer classes, so a config names them by ``_target_`` under ``uer.`` (as partial
factories a Transformer stack calls once per norm), and :func:`make_norm` for parts that pick one by
name (``norm: layernorm``)."""
from __future__ import annotations

from torch import nn

NORMS = ("layernorm", "rmsnorm")


class LayerNorm(nn.LayerNorm):
    """``torch.nn.LayerNorm`` over the last dimension, (..., D) -> (..., D), with ``weight`` and ``bias``.

    Args:
        dim: normalized width D.
        eps: added to the variance for numerical stability.
    """

    def __init__(self, *, dim: int, eps: float = 1e-12):
        super().__init__(dim, eps=eps)


class RMSNorm(nn.RMSNorm):
    """``torch.nn.RMSNorm`` (T5's LayerNorm: no mean subtraction, no bias), (..., D) -> (..., D),
    with a ``weight`` only.

    Args:
        dim: normalized width D.
        eps: added to the mean square for numerical stability.
    """

    def __init__(self, *, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps=eps)


def make_norm(kind: str, dim: int, eps: float = 1e-12) -> nn.Module:
    """A :class:`LayerNorm` (``kind="layernorm"``) or :class:`RMSNorm` (``"rmsnorm"``) of width ``dim``.

    Raises:
        ValueError: ``kind`` is not one of :data:`NORMS`.
    """
    if kind == "layernorm":
        return LayerNorm(dim=dim, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(dim=dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")
