"""The embedding container: a stack of parts applied in order, then norm, dropout and an optional
projection (ALBERT's factorized embedding, Lan et al. 2020)."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.dropout import Dropout
from uer.layers.norms import make_norm
from uer.layers.streams import Stream


class Embedding(nn.Module):
    """``forward(batch) -> Stream(x: (B, S, D_out), mask: (B, S) bool | None)`` (a tuple ``(x, mask)``).

    Each part is called as ``x, mask = part(batch, x, mask)``. The first part (word or patch
    embedding) gets ``x = None`` and the batch's padding mask and creates ``x`` (B, S, D); the next
    ones add to it (position, segment). A part that changes the length S (patches, convolutional
    subsampling) returns the mask of the new length, so the mask always matches ``x``. Parts become
    submodules under their config names, so the word table of a BERT embedding is
    ``embedding.word.weight``.

    Args:
        parts: name -> module, in application order.
        dim: D, the width of the parts.
        norm: ``layernorm``/``rmsnorm`` after the sum, or None.
        norm_eps: epsilon of that norm.
        dropout: dropout after the norm.
        project_dim: if set, a linear map D -> project_dim after dropout (the encoder width).
        mask_field: batch key of the padding mask the first part receives (1 = real token); when
            absent from the batch the mask is None (no position is padding).
    """

    def __init__(self, parts: dict[str, nn.Module], dim: int, norm: str | None = "layernorm",
                 norm_eps: float = 1e-12, dropout: float = 0.1, project_dim: int | None = None,
                 mask_field: str = "attention_mask"):
        super().__init__()
        self.part_names = list(parts)
        for name, module in parts.items():
            self.add_module(name, module)
        self.norm = make_norm(norm, dim, norm_eps) if norm else None
        self.dropout = Dropout(dropout)
        self.project = nn.Linear(dim, project_dim) if project_dim else None
        self.mask_field = mask_field

    def forward(self, batch: dict[str, torch.Tensor]) -> Stream:
        mask = batch.get(self.mask_field)
        x, mask = None, (None if mask is None else mask.bool())
        for name in self.part_names:
            x, mask = getattr(self, name)(batch, x, mask)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        if self.project is not None:
            x = self.project(x)
        return Stream(x, mask)
