"""Fixed sinusoidal position encoding (Vaswani et al. 2017, §3.5): the original Transformer, PEGASUS,
and fairseq's variant (S2T, Wang et al. 2020)."""
from __future__ import annotations

import math

import torch
from torch import nn

from uer.embeddings.position import positions


def sinusoid_table(max_length: int, dim: int) -> torch.Tensor:
    """(max_length, dim) float32: column pair k holds sin and cos of ``pos / 10000^(2k/dim)``, laid
    out as in tensor2tensor, fairseq and ``transformers``' PEGASUS/Marian: all sines in the first
    ceil(dim/2) columns, the cosines after them (the paper interleaves them; the layout is a fixed
    permutation of the columns, which a learned model does not care about)."""
    pos = torch.arange(max_length, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    return torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=1).float()


def fairseq_sinusoid_table(max_length: int, dim: int) -> torch.Tensor:
    """(max_length, dim) float32 of fairseq's ``SinusoidalPositionalEmbedding`` and ``transformers``'
    ``Speech2TextSinusoidalPositionalEmbedding``: sines, then cosines, of ``pos · 10000^(-k / (h - 1))``
    for k < h = dim // 2 (tensor2tensor's timescales), a zero column appended when dim is odd;
    computed in float32 in their order of operations."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    angle = torch.arange(max_length, dtype=torch.float32)[:, None] * freq[None]
    return torch.cat([torch.sin(angle), torch.cos(angle), torch.zeros(max_length, dim % 2)], dim=1)


TABLES = {"paper": sinusoid_table, "fairseq": fairseq_sinusoid_table}


class SinusoidalPositionEmbedding(nn.Module):
    """Adds the sinusoid of each position: x (B, S, D) -> x + table[position]; the mask passes through.

    The ``paper`` table is a persistent buffer (``weight``, not trained), stored in checkpoints as
    Hugging Face stores PEGASUS's, so a converted table is used exactly as the source had it. The
    ``fairseq`` table is rebuilt at construction and not stored, as Hugging Face's Speech2Text does.

    Args:
        max_length: rows of the table; positions at or beyond ``max_length - offset`` raise.
        dim: D.
        field: batch key of explicit position ids (B, S), used when present.
        frequencies: ``paper`` (:func:`sinusoid_table`) or ``fairseq`` (:func:`fairseq_sinusoid_table`).
        offset: row of the first position; fairseq numbers positions from ``padding_idx + 1`` (S2T: 2).

    Raises:
        ValueError: unknown ``frequencies``, ``offset`` outside [0, max_length); (in forward) the
            input is longer than the table.
    """

    def __init__(self, max_length: int, dim: int, field: str = "position_ids", frequencies: str = "paper",
                 offset: int = 0):
        super().__init__()
        if frequencies not in TABLES:
            raise ValueError(f"unknown sinusoid frequencies {frequencies!r}; choose one of {', '.join(TABLES)}")
        if not 0 <= offset < max_length:
            raise ValueError(f"position offset {offset} is outside [0, max_length={max_length})")
        self.field = field
        self.offset = offset
        self.register_buffer("weight", TABLES[frequencies](max_length, dim), persistent=frequencies == "paper")

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.field not in batch and x.shape[1] + self.offset > self.weight.shape[0]:
            raise ValueError(f"sequence length {x.shape[1]} exceeds the sinusoidal position table's "
                             f"{self.weight.shape[0] - self.offset} positions (max_length "
                             f"{self.weight.shape[0]}, offset {self.offset})")
        ids = positions(batch, self.field, x) + self.offset
        return x + nn.functional.embedding(ids, self.weight).to(x.dtype), mask
