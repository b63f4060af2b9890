"""Cosine-similarity regression of two sentence embeddings: SBERT's regression objective (Reimers &
Gurevych 2019, §3: cos(u, v) fit to a gold similarity score with mean squared error)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.streams import Stream, TwoStreams
from uer.targets.output import TargetOutput


def mean_pool(stream: Stream) -> torch.Tensor:
    """Mean of ``stream.x`` (B, S, D) over its real positions (all when the mask is None) -> (B, D)."""
    if stream.mask is None:
        return stream.x.mean(1)
    m = stream.mask.to(stream.x.dtype).unsqueeze(-1)
    return (stream.x * m).sum(1) / m.sum(1).clamp(min=1)


class CosineTarget(nn.Module):
    """``forward(hidden: TwoStreams, batch) -> TargetOutput``: mean-pools each stream to u, v (B, D)
    and regresses cos(u, v) onto ``batch[label_field]`` (B,) float in [-1, 1] (summed squared error);
    ``logits['cosine']`` is cos(u, v) (B,).

    Args:
        label_field: batch key of the gold similarity scores.

    Raises:
        TypeError: (in forward) ``hidden`` is not a :class:`~uer.layers.streams.TwoStreams` (this
            target needs a dual embedding and encoder).
    """

    def __init__(self, label_field: str = "labels"):
        super().__init__()
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of sentence pairs (scalar)."""
        return torch.tensor(batch[self.label_field].numel(), device=batch[self.label_field].device)

    def forward(self, hidden: TwoStreams, batch: dict[str, torch.Tensor]) -> TargetOutput:
        if not isinstance(hidden, TwoStreams):
            raise TypeError(f"the cosine target compares two streams; got {type(hidden).__name__} "
                             "(use a dual embedding and a dual encoder)")
        cos = F.cosine_similarity(mean_pool(hidden.first).float(), mean_pool(hidden.second).float(), dim=-1)
        loss_sum = F.mse_loss(cos, batch[self.label_field].float(), reduction="sum")
        return TargetOutput.single("cosine", loss_sum, self.num_items(batch), cos)
