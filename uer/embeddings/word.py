"""Token (word-piece) embedding."""
from __future__ import annotations

import math

import torch
from torch import nn


class WordEmbedding(nn.Module):
    """Looks up ``batch[field]`` (B, S) int64 -> (B, S, D), times sqrt(D) when ``scale``; starts the
    sum of an :class:`~uer.embeddings.Embedding` and passes the padding mask through.

    Args:
        vocab_size: V, rows of the table; must cover every id the tokenizer produces.
        dim: D.
        field: batch key holding the ids (``input_ids``; ``decoder_input_ids`` for a target embedding).
        scale: multiply by sqrt(D) (Vaswani et al. 2017 §3.4; PEGASUS, BART's ``scale_embedding``).
        tie_to: dotted path of a (V, D) model parameter to share instead of an own table (a target
            embedding sharing the source word embedding: ``embedding.word.weight``), or None.
        init_std: std of the normal initialization (BERT's 0.02; T5 uses 1.0: its RMS norms and
            d^-0.5-scaled tied head expect unit-scale embeddings).
    """

    def __init__(self, vocab_size: int, dim: int, field: str = "input_ids", scale: bool = False,
                 tie_to: str | None = None, init_std: float = 0.02):
        super().__init__()
        self.field = field
        self.scale = math.sqrt(dim) if scale else None
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.normal_(self.weight, std=init_std)
        self.tied_weights = {"weight": tie_to} if tie_to else {}

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the embeddings (B, S, D) and ``mask`` unchanged.

        Raises:
            ValueError: ``x`` is not None (the word embedding starts the sum; it is the first part).
        """
        if x is not None:
            raise ValueError("the word embedding starts the sum: list it first among the embedding parts")
        out = nn.functional.embedding(batch[self.field], self.weight)
        return (out if self.scale is None else out * self.scale), mask
