"""Token classification (sequence labeling, e.g. NER with BIO tags): a linear classifier on every
position, as in BERT's ``BertForTokenClassification`` (Devlin et al. 2019, §4.3)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import Dropout
from uer.targets.output import TargetOutput, accuracy


def class_weights_buffer(class_weights: list[float] | None, num_labels: int) -> torch.Tensor | None:
    """``class_weights`` as a (num_labels,) float32 tensor (None stays None).

    Raises:
        ValueError: not one weight per label, or a negative weight.
    """
    if class_weights is None:
        return None
    if len(class_weights) != num_labels:
        raise ValueError(f"class_weights has {len(class_weights)} values for {num_labels} labels")
    if any(w < 0 for w in class_weights):
        raise ValueError(f"class_weights must be >= 0, got {list(class_weights)}")
    return torch.tensor(list(class_weights), dtype=torch.float32)


def class_weighted_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Summed cross entropy of ``logits`` (N, C) against ``labels`` (N,), each item scaled by the
    weight of its true class when ``class_weights`` (C,) is given. Divided by the number of items
    (not by the sum of weights), so a weight of 2 counts an example twice."""
    return F.cross_entropy(logits.float(), labels, weight=None if class_weights is None else class_weights.float(),
                           reduction="sum")


class TokenClsTarget(nn.Module):
    """Dropout and a linear classifier on each position.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``labels`` (B, S) int64 with -100 at
    positions not scored (padding, special tokens, continuation word pieces);
    ``logits['token_cls']``: (N, num_labels) at the scored positions. :meth:`logits` gives all
    positions, (B, S, num_labels), for prediction without labels.

    Args:
        dim: D.  num_labels: number of tags.  dropout: before the classifier (training only).
        label_field: batch key of the labels.
        class_weights: a loss weight per tag, in tag order (None = all 1): see
            :func:`class_weighted_loss`. A training option: a (num_labels,) buffer kept out of the
            state dict.

    Raises:
        ValueError: ``class_weights`` not one non-negative weight per tag.
    """

    def __init__(self, dim: int, num_labels: int, dropout: float = 0.1, label_field: str = "labels",
                 class_weights: list[float] | None = None):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(dim, num_labels)
        self.label_field = label_field
        self.register_buffer("class_weights", class_weights_buffer(class_weights, num_labels), persistent=False)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of scored positions (scalar)."""
        return (batch[self.label_field] != -100).sum()

    def logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, S, D) -> (B, S, num_labels)."""
        return self.classifier(self.dropout(hidden))

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        scored = labels != -100
        logits = self.logits(hidden)[scored]
        gold = labels[scored]
        loss_sum = class_weighted_loss(logits, gold, self.class_weights)
        return TargetOutput.single("token_cls", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(logits, gold)})
