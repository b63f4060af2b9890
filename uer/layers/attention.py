"""Multi-head self-attention through ``torch.nn.functional.scaled_dot_product_attention``
(Vaswani et al. 2017), and the mask forms SDPA expects."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

PATTERNS = ("fully_visible", "causal")


def attention_mask(mask: torch.Tensor | None, pattern: str, length: int) -> tuple[torch.Tensor | None, bool]:
    """Turn a padding mask and an attention pattern into SDPA's ``(attn_mask, is_causal)``.

    Args:
        mask: (B, S) bool, True = real token, or None when no position is padding.
        pattern: ``fully_visible`` (BERT, ViT) or ``causal`` (GPT).
        length: S.

    Returns:
        ``attn_mask``: None (nothing to mask, the fastest SDPA path), or a bool tensor broadcastable
        to (B, H, S, S) where True = may attend; ``is_causal``: True when SDPA should apply the causal
        pattern itself (only when there is no padding mask).

    Raises:
        ValueError: unknown pattern.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown attention pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if mask is None:
        return None, pattern == "causal"
    keys = mask[:, None, None, :].bool()  # (B, 1, 1, S)
    if pattern == "causal":
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        keys = keys & causal
    return keys, False


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused q/k/v projection.

    Shapes: x (B, S, D) -> (B, S, D); ``qkv`` holds the query, key and value weights stacked as
    rows [q; k; v] of a (3D, D) matrix.

    Args:
        dim: model width D (divisible by ``num_heads``).
        num_heads: H.
        dropout: attention-probability dropout (active in training only).
        bias: biases on the projections.

    Raises:
        ValueError: ``dim`` is not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """x: (B, S, D); attn_mask and is_causal as returned by :func:`attention_mask`."""
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(h.transpose(1, 2).reshape(b, s, d))
