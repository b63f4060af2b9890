"""Extractive question answering: start and end logits of the answer span at every position, as in
BERT on SQuAD (Devlin et al. 2019, §4.2) and ``BertForQuestionAnswering``."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.targets.output import TargetOutput


class SpanTarget(nn.Module):
    """A linear map D -> 2 (start, end) on each position.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``start_positions`` and
    ``end_positions`` (B,) int64 (position 0, the [CLS] token, when a window holds no answer);
    loss = (CE(start) + CE(end)) / 2 per window, padding excluded from the softmax;
    ``logits['span']``: (B, S, 2). Metric ``acc``: start and end both right.
    :meth:`logits` needs no positions.

    Args:
        dim: D.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.outputs = nn.Linear(dim, 2)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of windows (scalar)."""
        return torch.tensor(batch["start_positions"].numel(), device=batch["start_positions"].device)

    def logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, D) -> (B, S, 2) start and end logits; padding positions get a large negative value."""
        logits = self.outputs(hidden)
        mask = batch.get("attention_mask")
        if mask is not None:
            logits = logits.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(logits.dtype).min)
        return logits

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        logits = self.logits(hidden, batch).float()
        start, end = batch["start_positions"], batch["end_positions"]
        loss_sum = (F.cross_entropy(logits[..., 0], start, reduction="sum")
                    + F.cross_entropy(logits[..., 1], end, reduction="sum")) / 2
        both = ((logits[..., 0].argmax(-1) == start) & (logits[..., 1].argmax(-1) == end)).sum()
        n = self.num_items(batch)
        return TargetOutput.single("span", loss_sum, n, logits, {"acc": (both, n)})
