"""One Transformer layer: self-attention and feed-forward, each in a residual branch with post-LN
(Vaswani et al. 2017; BERT) or pre-LN (Xiong et al. 2020; GPT-2) placement of the norm."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.attention import MultiHeadAttention
from uer.layers.feedforward import FeedForward
from uer.layers.norms import make_norm

NORM_POSITIONS = ("post", "pre")


class TransformerLayer(nn.Module):
    """Self-attention + FFN block, (B, S, D) -> (B, S, D).

    Args:
        dim, num_heads, ffn_dim: widths (D, H, inner FFN width).
        dropout: residual-branch dropout; ``attention_dropout`` on attention probabilities.
        activation, gated_ffn: FFN options (see :class:`uer.layers.feedforward.FeedForward`).
        norm, norm_eps: norm kind and epsilon (see :func:`uer.layers.norms.make_norm`).
        norm_position: ``post`` (x = norm(x + f(x))) or ``pre`` (x = x + f(norm(x))).
        bias: biases on linear maps.

    Raises:
        ValueError: unknown ``norm_position``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation: str = "gelu", gated_ffn: bool = False,
                 norm: str = "layernorm", norm_eps: float = 1e-12, norm_position: str = "post",
                 bias: bool = True):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"unknown norm_position {norm_position!r}; choose one of {', '.join(NORM_POSITIONS)}")
        self.pre_norm = norm_position == "pre"
        self.attention = MultiHeadAttention(dim, num_heads, attention_dropout, bias)
        self.attention_norm = make_norm(norm, dim, norm_eps)
        self.ffn = FeedForward(dim, ffn_dim, activation, dropout, bias, gated_ffn)
        self.ffn_norm = make_norm(norm, dim, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """x: (B, S, D); ``attn_mask``/``is_causal`` from :func:`uer.layers.attention.attention_mask`."""
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask, is_causal))
            return x + self.ffn(self.ffn_norm(x))
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask, is_causal)))
        return self.ffn_norm(x + self.ffn(x))
