"""Learned absolute position embedding (BERT, GPT-2, RoBERTa)."""
from __future__ import annotations

import torch
from torch import nn


class PositionEmbedding(nn.Module):
    """Adds a learned vector per position: x (B, S, D) -> x + P[offset : offset + S] (B, S, D).

    Args:
        max_length: rows of the table; inputs longer than ``max_length - offset`` raise.
        dim: D.
        offset: row of the first position. RoBERTa (fairseq) numbers positions from
            ``padding_idx + 1`` = 2, so its 514-row table serves 512 tokens; with ``offset: 2`` the
            Hugging Face table is used row for row. For right-padded batches this equals RoBERTa's
            numbering at every real token (fairseq ``utils.make_positions``).

    Raises:
        ValueError: ``offset`` outside [0, max_length); (in forward) the input is too long.
    """

    def __init__(self, max_length: int, dim: int, offset: int = 0):
        super().__init__()
        if not 0 <= offset < max_length:
            raise ValueError(f"position offset {offset} is outside [0, max_length={max_length})")
        self.offset = offset
        self.weight = nn.Parameter(torch.empty(max_length, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if self.offset + length > self.weight.shape[0]:
            raise ValueError(f"sequence length {length} exceeds the position embedding's "
                             f"{self.weight.shape[0] - self.offset} positions (max_length "
                             f"{self.weight.shape[0]}, offset {self.offset})")
        return x + self.weight[self.offset:self.offset + length]
