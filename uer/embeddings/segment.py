"""Segment (token type) embedding of BERT's sentence A / sentence B."""
from __future__ import annotations

import torch
from torch import nn


class SegmentEmbedding(nn.Module):
    """Adds ``E[token_type_ids]``: x (B, S, D) -> (B, S, D). Missing ``token_type_ids`` means all 0.
    The mask passes through.

    Args:
        num_segments: rows of the table (2 for BERT).
        dim: D.
    """

    def __init__(self, num_segments: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_segments, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = batch.get("token_type_ids")
        if ids is None:
            return x + self.weight[0], mask
        return x + nn.functional.embedding(ids, self.weight), mask
