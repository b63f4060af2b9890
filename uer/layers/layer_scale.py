"""LayerScale (Touvron et al. 2021, "Going deeper with Image Transformers", CaiT; used by BEiT): a
residual branch's output multiplied by a learnable per-channel factor that starts small, so deep
stacks begin close to the identity. A wrapper around any branch part (feed-forward or attention),
chosen in config like the part it wraps."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class LayerScale(nn.Module):
    """``gamma * branch(...)``: (..., D) -> (..., D) with ``gamma`` a learnable (D,) vector.

    Parameters: ``branch.*`` (the wrapped part's own) and ``gamma``.

    Args:
        branch: factory of the wrapped part, called with ``branch_kwargs`` (a stack passes
            ``cross=True`` when it builds a cross-attention from an attention factory).
        dim: D, the width of the branch's output.
        init: the initial value of every entry of ``gamma`` (CaiT: 0.1 up to depth 18, then smaller).
    """

    def __init__(self, *, branch: Callable[..., nn.Module], dim: int, init: float = 0.1, **branch_kwargs):
        super().__init__()
        self.branch = branch(**branch_kwargs)
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The wrapped part's forward, its output scaled per channel."""
        return self.gamma * self.branch(*args, **kwargs)
