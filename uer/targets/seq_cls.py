"""Sequence (sentence or sentence-pair) classification for fine-tuning: BERT's pooled [CLS]
classifier (Devlin et al. 2019, §4.1) with dropout, class weights and prediction without labels."""
from __future__ import annotations

import torch

from uer.layers.dropout import Dropout
from uer.targets.cls import ClsTarget
from uer.targets.output import TargetOutput, accuracy
from uer.targets.token_cls import class_weighted_loss, class_weights_buffer


class SeqClsTarget(ClsTarget):
    """:class:`ClsTarget` (pooling, optional dense + tanh pooler, classifier) with dropout before the
    classifier, as ``BertForSequenceClassification`` and ``RobertaClassificationHead`` have.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``labels`` (B,) int64;
    ``logits['cls']``: (B, num_labels). :meth:`logits` needs no labels.

    Args:
        dim, num_labels, pooling, pooler, label_field: as for :class:`ClsTarget`.
        dropout: before the classifier (training only).
        class_weights: a loss weight per class, in label order (None = all 1): see
            :func:`~uer.targets.token_cls.class_weighted_loss`. A training option: a (num_labels,)
            buffer kept out of the state dict.

    Raises:
        ValueError: unknown pooling; ``class_weights`` not one non-negative weight per class.
    """

    def __init__(self, dim: int, num_labels: int, pooling: str = "first", pooler: bool = True,
                 dropout: float = 0.1, label_field: str = "labels", class_weights: list[float] | None = None):
        super().__init__(dim, num_labels, pooling, pooler, label_field)
        self.dropout = Dropout(dropout)
        self.register_buffer("class_weights", class_weights_buffer(class_weights, num_labels), persistent=False)

    def logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, D) -> (B, num_labels)."""
        return self.classifier(self.dropout(self.pool(hidden, batch)))

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        logits = self.logits(hidden, batch)
        loss_sum = class_weighted_loss(logits, labels, self.class_weights)
        return TargetOutput.single("cls", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(logits, labels)})
