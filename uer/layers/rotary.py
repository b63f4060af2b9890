"""Rotary position embedding (RoPE, Su et al. 2021, RoFormer): q and k of every head are rotated by
angles proportional to their position, so q·k depends only on the relative offset. The layout is the
half rotation of Hugging Face's LLaMA (``rotate_half``: dimension i pairs with i + Dh/2), not the
interleaved pairs of the RoFormer paper; a converter for checkpoints in the other layout permutes
the q/k rows."""
from __future__ import annotations

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., Dh) -> (..., Dh): the halves [x1, x2] become [-x2, x1] (a 90° turn of each pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotate queries and keys by their positions: ``forward(q, k, position_ids) -> (q, k)``.

    The angle of pair i at position p is ``p · base^(-2i / Dh)``, i < Dh/2. Shapes: q (B, H, T, Dh),
    k (B, Hkv, T, Dh), position_ids (B, T) or (1, T) int64; outputs have the inputs' shapes and dtype
    (angles are computed in float32). No parameters: one instance may serve every layer.

    Args:
        head_dim: Dh, even.
        base: the wavelength base (10000 in RoFormer and LLaMA).

    Raises:
        ValueError: ``head_dim`` is odd.
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        angles = position_ids.to(self.inv_freq.device, torch.float32)[..., None] * self.inv_freq  # (B, T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, Dh)
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"
