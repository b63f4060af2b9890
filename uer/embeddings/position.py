"""Learned absolute position embedding (BERT, GPT-2, ViT)."""
from __future__ import annotations

import torch
from torch import nn


class PositionEmbedding(nn.Module):
    """Adds a learned vector per position: x (B, S, D) -> x + P[0:S] (B, S, D).

    Args:
        max_length: the number of positions; longer inputs raise.
        dim: D.

    Raises:
        ValueError: (in forward) the input is longer than ``max_length``.
    """

    def __init__(self, max_length: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_length, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.weight.shape[0]:
            raise ValueError(f"sequence length {length} exceeds the position embedding's max_length "
                             f"{self.weight.shape[0]}")
        return x + self.weight[:length]
