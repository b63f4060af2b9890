"""Sentence-pair prediction: next sentence prediction (NSP, Devlin et al. 2019) or sentence order
prediction (SOP, Lan et al. 2020) — the head is the same, the data decides which."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.targets.output import TargetOutput, accuracy


class SpTarget(nn.Module):
    """Pooler (dense + tanh on the first token) and a 2-way classifier.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``next_sentence_label`` (B,) with
    0 = B follows A (NSP) / original order (SOP), 1 = random B / swapped; ``logits['sp']``: (B, 2).

    Args:
        dim: D.  label_field: batch key of the labels.
    """

    def __init__(self, dim: int, label_field: str = "next_sentence_label"):
        super().__init__()
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, 2)
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of sentence pairs (scalar)."""
        return torch.tensor(batch[self.label_field].numel(), device=batch[self.label_field].device)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        logits = self.classifier(torch.tanh(self.pooler(hidden[:, 0])))
        loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
        return TargetOutput.single("sp", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(logits, labels)})
