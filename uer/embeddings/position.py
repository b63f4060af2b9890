"""Learned absolute position embedding (BERT, GPT-2, RoBERTa, BART) and how positions are numbered."""
from __future__ import annotations

import torch
from torch import nn


def positions(batch: dict[str, torch.Tensor], field: str, x: torch.Tensor) -> torch.Tensor:
    """The position ids of ``x`` (B, S, D): ``batch[field]`` (B, S) when present (Hugging Face's
    ``position_ids``; :meth:`uer.models.Model.decode` fills ``decoder_position_ids`` from a cache's
    length), else ``0 .. S-1`` (1, S)."""
    ids = batch.get(field)
    return torch.arange(x.shape[1], device=x.device)[None] if ids is None else ids


class PositionEmbedding(nn.Module):
    """Adds a learned vector per position: x (B, S, D) -> x + P[offset + position] (B, S, D); the
    mask passes through.

    Args:
        max_length: rows of the table; positions beyond ``max_length - offset`` raise.
        dim: D.
        offset: row of the first position. RoBERTa (fairseq) numbers positions from
            ``padding_idx + 1`` = 2, so its 514-row table serves 512 tokens; with ``offset: 2`` the
            Hugging Face table is used row for row. For right-padded batches this equals RoBERTa's
            numbering at every real token (fairseq ``utils.make_positions``). BART also uses 2.
        field: batch key of explicit position ids (B, S), used when present (see :func:`positions`).

    Raises:
        ValueError: ``offset`` outside [0, max_length); (in forward) the input is too long.
    """

    def __init__(self, max_length: int, dim: int, offset: int = 0, field: str = "position_ids"):
        super().__init__()
        if not 0 <= offset < max_length:
            raise ValueError(f"position offset {offset} is outside [0, max_length={max_length})")
        self.offset = offset
        self.field = field
        self.weight = nn.Parameter(torch.empty(max_length, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = positions(batch, self.field, x)
        # explicit ids (generation) are checked by value: one host read per step, never in training
        needed = int(ids.max()) + 1 if self.field in batch else x.shape[1]
        if self.offset + needed > self.weight.shape[0]:
            raise ValueError(f"sequence length {needed} exceeds the position embedding's "
                             f"{self.weight.shape[0] - self.offset} positions (max_length "
                             f"{self.weight.shape[0]}, offset {self.offset})")
        return x + nn.functional.embedding(ids + self.offset, self.weight), mask
