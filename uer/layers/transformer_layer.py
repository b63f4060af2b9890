"""One Transformer layer: self-attention, optionally cross-attention to an encoder memory (a decoder
layer), and feed-forward, each in a residual branch with post-LN (Vaswani et al. 2017; BERT, BART)
or pre-LN (Xiong et al. 2020; GPT-2, T5, PEGASUS) placement of the norm."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.attention import MultiHeadAttention
from uer.layers.dropout import Dropout
from uer.layers.feedforward import FeedForward
from uer.layers.kv_cache import KVCache
from uer.layers.norms import make_norm

NORM_POSITIONS = ("post", "pre")


class TransformerLayer(nn.Module):
    """Self-attention [+ cross-attention] + FFN block, (B, T, D) -> (B, T, D).

    Parameters: ``attention`` / ``attention_norm``, [``cross_attention`` / ``cross_attention_norm``],
    ``ffn`` / ``ffn_norm``.

    Args:
        dim, num_heads, ffn_dim: widths (D, H, inner FFN width).
        dropout: residual-branch dropout; ``attention_dropout`` on attention probabilities;
            ``activation_dropout`` inside the FFN.
        activation, gated_ffn: FFN options (see :class:`uer.layers.feedforward.FeedForward`).
        norm, norm_eps: norm kind and epsilon (see :func:`uer.layers.norms.make_norm`).
        norm_position: ``post`` (x = norm(x + f(x))) or ``pre`` (x = x + f(norm(x))).
        bias: biases on linear maps.
        head_dim, attention_scale: attention options (see :class:`~uer.layers.attention.MultiHeadAttention`).
        cross_attention: add a cross-attention block between self-attention and FFN (decoder layer).

    Raises:
        ValueError: unknown ``norm_position``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation: str = "gelu", gated_ffn: bool = False,
                 norm: str = "layernorm", norm_eps: float = 1e-12, norm_position: str = "post",
                 bias: bool = True, head_dim: int | None = None, attention_scale: float | None = None,
                 activation_dropout: float = 0.0, cross_attention: bool = False):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"unknown norm_position {norm_position!r}; choose one of {', '.join(NORM_POSITIONS)}")
        self.pre_norm = norm_position == "pre"
        self.attention = MultiHeadAttention(dim, num_heads, attention_dropout, bias, head_dim, attention_scale)
        self.attention_norm = make_norm(norm, dim, norm_eps)
        if cross_attention:
            self.cross_attention = MultiHeadAttention(dim, num_heads, attention_dropout, bias, head_dim,
                                                      attention_scale, cross=True)
            self.cross_attention_norm = make_norm(norm, dim, norm_eps)
        else:
            self.cross_attention = None
        self.ffn = FeedForward(dim, ffn_dim, activation, dropout, bias, gated_ffn, activation_dropout)
        self.ffn_norm = make_norm(norm, dim, norm_eps)
        self.dropout = Dropout(dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, branch) -> torch.Tensor:
        if self.pre_norm:
            return x + branch(norm(x))
        return norm(x + branch(x))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, index: int = 0) -> torch.Tensor:
        """x: (B, T, D); ``attn_mask``/``is_causal`` from :func:`uer.layers.attention.attention_mask`
        (or a float mask with a position bias); ``memory`` (B, S, D) and ``memory_mask`` (SDPA form,
        broadcastable to (B, H, T, S)) for the cross-attention; ``cache``/``index``: this layer's slot
        in a :class:`~uer.layers.kv_cache.KVCache` for incremental decoding."""
        x = self._residual(x, self.attention_norm, lambda h: self.dropout(
            self.attention(h, attn_mask, is_causal, cache=cache, index=index)))
        if self.cross_attention is not None:
            x = self._residual(x, self.cross_attention_norm, lambda h: self.dropout(
                self.cross_attention(h, memory_mask, memory=memory, cache=cache, index=index)))
        return self._residual(x, self.ffn_norm, self.ffn)
