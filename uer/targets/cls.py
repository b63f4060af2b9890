"""Sequence classification head (BERT's pooled [CLS] classifier; ViT's classification head)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.norms import make_norm
from uer.targets.output import TargetOutput, accuracy

POOLINGS = ("first", "mean", "patches")


class ClsTarget(nn.Module):
    """Pools the sequence, optionally applies dense + tanh (BERT's pooler) or a norm (BEiT), then
    classifies.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; reads ``labels`` (B,) int64 class ids;
    ``logits['cls']``: (B, num_labels).

    Args:
        dim: D.  num_labels: number of classes.
        pooling: ``first`` (the [CLS] position), ``mean`` (over real tokens) or ``patches`` (the
            mean of every position after the first: BEiT's mean pooling of the patches, Bao et al.
            2022, §3.1; Hugging Face's ``BeitPooler``).
        pooler: apply dense + tanh before the classifier.
        norm, norm_eps: a LayerNorm on the pooled vector (BEiT's ``fc_norm``; parameter ``norm``).
        label_field: batch key of the labels.

    Raises:
        ValueError: unknown pooling.
    """

    def __init__(self, dim: int, num_labels: int, pooling: str = "first", pooler: bool = False,
                 label_field: str = "labels", norm: bool = False, norm_eps: float = 1e-12):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.pooler = nn.Linear(dim, dim) if pooler else None
        self.norm = make_norm("layernorm", dim, norm_eps) if norm else None
        self.classifier = nn.Linear(dim, num_labels)
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of examples (scalar)."""
        return torch.tensor(batch[self.label_field].numel(), device=batch[self.label_field].device)

    def pool(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, D) -> (B, D)."""
        if self.pooling == "first":
            pooled = hidden[:, 0]
        elif self.pooling == "patches":
            pooled = hidden[:, 1:].mean(1)
        else:
            mask = batch.get("attention_mask")
            if mask is None:
                pooled = hidden.mean(1)
            else:
                m = mask.to(hidden.dtype).unsqueeze(-1)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        if self.norm is not None:
            pooled = self.norm(pooled)
        return pooled if self.pooler is None else torch.tanh(self.pooler(pooled))

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        logits = self.classifier(self.pool(hidden, batch))
        loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
        return TargetOutput.single("cls", loss_sum, self.num_items(batch), logits,
                                   {"acc": accuracy(logits, labels)})
