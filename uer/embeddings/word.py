"""Token (word-piece) embedding."""
from __future__ import annotations

import torch
from torch import nn


class WordEmbedding(nn.Module):
    """Looks up ``batch[field]`` (B, S) int64 -> (B, S, D).

    Args:
        vocab_size: V, rows of the table; must cover every id the tokenizer produces.
        dim: D.
        field: batch key holding the ids (``input_ids``; ``decoder_input_ids`` for a target embedding).
    """

    def __init__(self, vocab_size: int, dim: int, field: str = "input_ids"):
        super().__init__()
        self.field = field
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the embeddings (B, S, D); ``x`` must be None (the word embedding starts the sum)."""
        return nn.functional.embedding(batch[self.field], self.weight)
