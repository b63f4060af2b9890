"""Causal language modeling (Radford et al. 2019): predict token t+1 from positions ≤ t."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.targets.output import TargetOutput, accuracy


class LmTarget(nn.Module):
    """Next-token prediction. ``labels`` (B, S) are the input ids themselves (-100 = ignore, e.g.
    padding); position t is scored against ``labels[:, t + 1]``, as in Hugging Face's causal LMs.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; ``logits['lm']``: (N, V) for the N scored
    positions in row-major order.

    Args:
        dim: D.  vocab_size: V.
        bias: bias on the output projection (GPT-2 has none).
        tie_decoder_to: dotted path of a (V, D) model parameter to share (the word embedding), or None.
        label_field: batch key of the labels.
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = False, tie_decoder_to: str | None = None,
                 label_field: str = "labels"):
        super().__init__()
        self.decoder = nn.Linear(dim, vocab_size, bias=bias)
        self.tied_weights = {"decoder.weight": tie_decoder_to} if tie_decoder_to else {}
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of scored positions (scalar)."""
        return (batch[self.label_field][:, 1:] != -100).sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field][:, 1:]
        selected = labels != -100
        h = hidden[:, :-1][selected]
        y = labels[selected]
        logits = self.decoder(h)
        loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        return TargetOutput.single("lm", loss_sum, selected.sum(), logits, {"acc": accuracy(logits, y)})
