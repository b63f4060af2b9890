"""T5's bucketed relative position bias (Raffel et al. 2020, after Shaw et al. 2018), computed once
per stack and added to every layer's attention scores, as in the reference implementation."""
from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """Map ``key position - query position`` (any shape, int64) to a bucket in [0, num_buckets).

    Half the buckets (per direction when ``bidirectional``) are exact small distances, the rest
    grow logarithmically up to ``max_distance``; a causal stack (not bidirectional) only sees the past.
    The same arithmetic as Mesh TensorFlow and ``transformers``' T5, so the buckets agree exactly.
    """
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        relative = relative.abs()
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(relative < max_exact, relative, large)


class RelativePositionBias(nn.Module):
    """A learned scalar per (bucket, head): ``forward(length, past) -> (1, H, length, past + length)``.

    Args:
        num_heads: H.
        num_buckets: rows of the table (32 in T5).
        max_distance: distances from here on share the last bucket (128 in T5).
        bidirectional: encoder (True) or causal decoder (False) bucketing.
    """

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads))
        nn.init.normal_(self.weight, std=0.02)
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def forward(self, length: int, past: int = 0) -> torch.Tensor:
        """Bias for queries at positions ``past .. past + length - 1`` over keys ``0 .. past + length - 1``."""
        device = self.weight.device
        query = torch.arange(past, past + length, device=device)[:, None]
        key = torch.arange(past + length, device=device)[None, :]
        buckets = relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)
        return nn.functional.embedding(buckets, self.weight).permute(2, 0, 1).unsqueeze(0)
