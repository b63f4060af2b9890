"""Sequence (sentence or sentence-pair) classification for fine-tuning: BERT's pooled [CLS]
classifier (Devlin et al. 2019, §4.1) with dropout, class weights and prediction without labels."""
from __future__ import annotations

import torch

from uer.layers.dropout import Dropout
from uer.targets.cls import ClsTarget
from uer.targets.output import TargetOutput, accuracy
from uer.targets.token_cls import class_weighted_loss


class SeqClsTarget(ClsTarget):
    """:class:`ClsTarget` (pooling, optional dense + tanh pooler, classifier) with dropout before the
    classifier, as ``BertForSequenceClassification`` and ``RobertaClassificationHead`` have.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``labels`` (B,) int64;
    ``logits['cls']``: (B, num_labels). :meth:`logits` needs no labels.

    Args:
        dim, num_labels, pooling, pooler, label_field: as for :class:`ClsTarget`.
        dropout: before the classifier (training only).

    Attributes:
        class_weights: (num_labels,) float or None: loss weight per class (a training option, kept
            out of the state dict); set it after building the model.

    Raises:
        ValueError: unknown pooling.
    """

    def __init__(self, dim: int, num_labels: int, pooling: str = "first", pooler: bool = True,
                 dropout: float = 0.1, label_field: str = "labels"):
        super().__init__(dim, num_labels, pooling, pooler, label_field)
        self.dropout = Dropout(dropout)
        self.register_buffer("class_weights", None, persistent=False)

    def logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, D) -> (B, num_labels)."""
        return self.classifier(self.dropout(self.pool(hidden, batch)))

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        logits = self.logits(hidden, batch)
        loss_sum = class_weighted_loss(logits, labels, self.class_weights)
        return TargetOutput.single("cls", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(logits, labels)})
