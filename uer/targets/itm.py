"""Image–text matching (ITM): does this image go with this text? (ViLT, Kim et al. 2021, §3.2;
UNITER, Chen et al. 2020)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.targets.output import TargetOutput, accuracy


class ItmTarget(nn.Module):
    """Pooler (dense + tanh on the first position, the text [CLS] of a single-stream model) and a
    binary head: one matching logit per pair, trained with binary cross-entropy.

    One logit rather than two softmax classes is the head of Hugging Face's
    ``ViltForImageAndTextRetrieval`` (``rank_output``), so the whole target converts to it; it is
    the same classifier as ViLT's two-way ``itm_score`` (the logit is the difference of the two).

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``label_field`` (B,) int64 with
    1 = the image and text belong together, 0 = a negative (one of them replaced by another
    sample's); ``logits['itm']``: (B,) matching logits; metric ``acc``: logit > 0 agrees with the label.

    Args:
        dim: D.  label_field: batch key of the labels.
    """

    def __init__(self, dim: int, label_field: str = "itm_labels"):
        super().__init__()
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, 1)
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of image–text pairs (scalar)."""
        return torch.tensor(batch[self.label_field].numel(), device=batch[self.label_field].device)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        logits = self.classifier(torch.tanh(self.pooler(hidden[:, 0]))).squeeze(-1)
        loss_sum = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")
        two_way = torch.stack([torch.zeros_like(logits), logits], dim=-1)  # class 1 wins when the logit is > 0
        return TargetOutput.single("itm", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(two_way.detach(), labels)})
