"""The values that flow between model parts: one stream ``(x, mask)``, or two of them for two-tower
models (CLIP's text and image, Radford et al. 2021; SBERT's sentence A and B, Reimers & Gurevych
2019). They live in ``layers``, the lowest package, so embeddings, encoders, targets and models all
import them downward."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class Stream(NamedTuple):
    """One sequence: ``x`` (B, S, D) and its padding ``mask`` (B, S) bool, True = real position, or
    None when no position is padding. A tuple, so ``x, mask = stream`` works wherever a part
    returns ``(x, mask)``."""

    x: torch.Tensor
    mask: torch.Tensor | None


@dataclass(frozen=True)
class TwoStreams:
    """Two independent sequences of possibly different lengths and widths, each with its own mask.

    A dual embedding returns ``(TwoStreams, None)`` in the ``(x, mask)`` slots of the single-stream
    protocol (each member carries its mask; no single mask covers both), a dual encoder maps it to a
    ``TwoStreams`` of hidden states, and a two-tower target reads it as its ``hidden``. Single-stream
    parts never see it.

    Attributes:
        first: the first stream (text; sentence A), x (B, S1, D1).
        second: the second stream (image patches; sentence B), x (B, S2, D2).

    Raises:
        TypeError: a member is not a :class:`Stream`.
        ValueError: the two batch sizes differ.
    """

    first: Stream
    second: Stream

    def __post_init__(self):
        for name in ("first", "second"):
            if not isinstance(getattr(self, name), Stream):
                raise TypeError(f"TwoStreams.{name} must be a Stream(x, mask), got {type(getattr(self, name)).__name__}")
        if self.first.x.shape[0] != self.second.x.shape[0]:
            raise ValueError(f"the two streams have batch sizes {self.first.x.shape[0]} and {self.second.x.shape[0]}")
