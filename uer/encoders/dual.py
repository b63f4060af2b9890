"""Two encoders side by side for two-tower models: CLIP's text and image towers (Radford et al.
2021), SBERT's siamese sentence encoder (Reimers & Gurevych 2019)."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.streams import Stream, TwoStreams


class DualEncoder(nn.Module):
    """``forward(x: TwoStreams, mask=None) -> TwoStreams`` of hidden states: each stream's ``(x, mask)``
    goes through its own single-stream encoder (``forward(x, mask) -> (B, S, D)``) and keeps its mask.

    Args:
        first: encoder of the first stream; parameters ``first.*``.
        second: encoder of the second stream, or None to apply ``first`` to both (SBERT: shared weights).

    Raises:
        TypeError: (in forward) ``x`` is not a :class:`~uer.layers.streams.TwoStreams` (pair this
            encoder with a dual embedding).
        ValueError: (in forward) a mask or context is passed next to it (each stream carries its
            mask; positions come from each stream's embedding).
    """

    def __init__(self, first: nn.Module, second: nn.Module | None = None):
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: TwoStreams, mask: torch.Tensor | None = None, **context) -> TwoStreams:
        if not isinstance(x, TwoStreams):
            raise TypeError(f"a dual encoder takes TwoStreams from a dual embedding, got {type(x).__name__}")
        if mask is not None or context:
            raise ValueError(f"a dual encoder takes no shared mask or context ({sorted(context)}): "
                             "each stream carries its own mask")
        second = self.first if self.second is None else self.second
        return TwoStreams(Stream(self.first(*x.first), x.first.mask), Stream(second(*x.second), x.second.mask))
