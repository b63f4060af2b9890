"""Fixed sinusoidal position encoding (Vaswani et al. 2017, §3.5): the original Transformer, PEGASUS."""
from __future__ import annotations

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


class SinusoidalPositionEmbedding(nn.Module):
    """Adds the sinusoid of each position: x (B, S, D) -> x + table[position]; the mask passes through.

    The table is a persistent buffer (``weight``, not trained), stored in checkpoints as Hugging
    Face stores PEGASUS's, so a converted table is used exactly as the source had it.

    Args:
        max_length: rows of the table; longer inputs raise.
        dim: D.
        field: batch key of explicit position ids (B, S), used when present.

    Raises:
        ValueError: (in forward) the input is longer than the table.
    """

    def __init__(self, max_length: int, dim: int, field: str = "position_ids"):
        super().__init__()
        self.field = field
        self.register_buffer("weight", sinusoid_table(max_length, dim))

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.field not in batch and x.shape[1] > self.weight.shape[0]:
            raise ValueError(f"sequence length {x.shape[1]} exceeds the sinusoidal position table's "
                             f"{self.weight.shape[0]} positions (max_length)")
        return x + nn.functional.embedding(positions(batch, self.field, x), self.weight).to(x.dtype), mask
