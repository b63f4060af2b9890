"""One Transformer layer built from injected parts: self-attention, optionally cross-attention to an
encoder memory (a decoder layer), and feed-forward, each in a residual branch with post-LN (Vaswani
et al. 2017; BERT, BART) or pre-LN (Xiong et al. 2020; GPT-2, T5, PEGASUS) placement of its norm.
The layer does not know which attention, feed-forward or norm classes it holds: a stack builds them
from the factories its config names (``_target_``), so a new variant is a new class, not a new flag."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.dropout import Dropout
from uer.layers.kv_cache import KVCache

NORM_POSITIONS = ("post", "pre")


class TransformerLayer(nn.Module):
    """Self-attention [+ cross-attention] + FFN block, (B, T, D) -> (B, T, D).

    Parameters: ``attention`` / ``attention_norm``, [``cross_attention`` / ``cross_attention_norm``],
    ``ffn`` / ``ffn_norm``: whatever the given modules hold (checkpoints and conversion specs name
    ``attention.qkv``, ``ffn.up``, ``attention_norm.weight`` ... of the default parts).

    Args:
        attention: self-attention, called ``attention(h, attn_mask, is_causal, cache=, index=, **context)``
            (see :class:`uer.layers.attention.MultiHeadAttention`).
        ffn: feed-forward, ``ffn(h) -> h`` (its own output dropout included).
        attention_norm, ffn_norm: norms of the two branches, (..., D) -> (..., D).
        cross_attention: attention to an encoder memory, called ``(h, memory_mask, memory=, cache=, index=)``,
            or None (an encoder layer); ``cross_attention_norm`` its norm, given exactly with it.
        dropout: dropout on the attention branches' outputs.
        norm_position: ``post`` (x = norm(x + f(x))) or ``pre`` (x = x + f(norm(x))).

    Raises:
        ValueError: unknown ``norm_position``, or only one of ``cross_attention`` and
            ``cross_attention_norm`` given.
    """

    def __init__(self, *, attention: nn.Module, ffn: nn.Module, attention_norm: nn.Module, ffn_norm: nn.Module,
                 cross_attention: nn.Module | None = None, cross_attention_norm: nn.Module | None = None,
                 dropout: float, norm_position: str):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"unknown norm_position {norm_position!r}; choose one of {', '.join(NORM_POSITIONS)}")
        if (cross_attention is None) != (cross_attention_norm is None):
            raise ValueError("cross_attention and cross_attention_norm go together: give both or neither")
        self.pre_norm = norm_position == "pre"
        # registration order = the state dict's order, as before the parts were injected
        self.attention = attention
        self.attention_norm = attention_norm
        self.cross_attention = cross_attention
        if cross_attention_norm is not None:
            self.cross_attention_norm = cross_attention_norm
        self.ffn = ffn
        self.ffn_norm = ffn_norm
        self.dropout = Dropout(dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, branch) -> torch.Tensor:
        if self.pre_norm:
            return x + branch(norm(x))
        return norm(x + branch(x))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False, *,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, index: int = 0, **context) -> torch.Tensor:
        """x: (B, T, D); ``attn_mask``/``is_causal`` from :func:`uer.layers.attention.attention_mask`
        (or a float mask with a position bias); ``memory`` (B, S, D) and ``memory_mask`` (SDPA form,
        broadcastable to (B, H, T, S)) for the cross-attention; ``cache``/``index``: this layer's slot
        in a :class:`~uer.layers.kv_cache.KVCache` for incremental decoding; ``context`` (e.g.
        ``position_ids``) goes to the self-attention unread."""
        x = self._residual(x, self.attention_norm, lambda h: self.dropout(
            self.attention(h, attn_mask, is_causal, cache=cache, index=index, **context)))
        if self.cross_attention is not None:
            x = self._residual(x, self.cross_attention_norm, lambda h: self.dropout(
                self.cross_attention(h, memory_mask, memory=memory, cache=cache, index=index)))
        return self._residual(x, self.ffn_norm, self.ffn)
