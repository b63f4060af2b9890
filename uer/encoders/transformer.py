"""The Transformer encoder stack. One class covers BERT (post-LN, fully visible), GPT-2 (pre-LN,
causal, final norm), ViT (pre-LN, fully visible), ALBERT (cross-layer parameter sharing, Lan et al.
2020), the T5 encoder (RMS norm, no biases, unscaled attention, bucketed relative position bias)
and prefix LMs (Raffel et al. 2020, §3.2.1) through options. :class:`uer.decoders.TransformerDecoder`
is the same stack with cross-attention."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from uer.layers.attention import attention_mask, with_bias
from uer.layers.kv_cache import KVCache
from uer.layers.norms import make_norm
from uer.layers.relative_position import RelativePositionBias
from uer.layers.transformer_layer import TransformerLayer


class TransformerEncoder(nn.Module):
    """A stack of :class:`~uer.layers.transformer_layer.TransformerLayer`.

    ``forward(x: (B, S, D), mask: (B, S) bool | None, cache=None, prefix=None) -> (B, S, D)``;
    ``mask`` True = real token, None = no padding. Parameters: ``layers.{i}.*``, ``final_norm``,
    ``position_bias.weight`` (num_buckets, H) when ``relative_position_buckets`` is set.

    Args:
        dim, num_layers, num_heads, ffn_dim: sizes (D, L, H, inner FFN width).
        dropout, attention_dropout, activation_dropout: dropout probabilities.
        activation, gated_ffn, norm, norm_eps, norm_position, bias: per-layer options.
        head_dim: per-head width (None = D / H); attention_scale: factor on q·k (None = head_dim^-0.5,
            T5: 1.0).
        mask: attention pattern, ``fully_visible``, ``causal`` or ``prefix`` (``forward`` then needs
            ``prefix``; :class:`uer.models.Model` passes it from ``token_type_ids``).
        final_norm: apply a norm after the last layer (None = exactly when ``norm_position`` is pre,
            as in GPT-2, ViT and T5).
        relative_position_buckets: if set, a T5 relative position bias with this many buckets
            (bidirectional unless the pattern is causal), computed once and added in every layer.
        relative_position_max_distance: T5's ``relative_attention_max_distance``.
        share_layers: one set of layer weights applied ``num_layers`` times (ALBERT).
        gradient_checkpointing: recompute layer activations in backward to save memory.
    """

    cross_attention = False

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation: str = "gelu", gated_ffn: bool = False,
                 norm: str = "layernorm", norm_eps: float = 1e-12, norm_position: str = "post",
                 bias: bool = True, mask: str = "fully_visible", final_norm: bool | None = None,
                 share_layers: bool = False, gradient_checkpointing: bool = False, head_dim: int | None = None,
                 attention_scale: float | None = None, activation_dropout: float = 0.0,
                 relative_position_buckets: int | None = None, relative_position_max_distance: int = 128):
        super().__init__()
        self.num_layers = num_layers
        self.mask = mask
        self.share_layers = share_layers
        self.gradient_checkpointing = gradient_checkpointing
        attention_mask(None, mask, 1, prefix=torch.ones(1, 1))  # validates the pattern name at build time
        n_distinct = 1 if share_layers else num_layers
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, ffn_dim, dropout, attention_dropout, activation, gated_ffn,
                             norm, norm_eps, norm_position, bias, head_dim, attention_scale, activation_dropout,
                             self.cross_attention)
            for _ in range(n_distinct))
        if final_norm is None:
            final_norm = norm_position == "pre"
        self.final_norm = make_norm(norm, dim, norm_eps) if final_norm else None
        self.position_bias = None
        if relative_position_buckets:
            self.position_bias = RelativePositionBias(num_heads, relative_position_buckets,
                                                      relative_position_max_distance, bidirectional=mask != "causal")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, cache: KVCache | None = None,
                prefix: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, D), mask: (B, S) bool or None -> (B, S, D).

        With a ``cache`` (causal stacks: incremental decoding) ``x`` holds only the new positions and
        ``mask`` covers all cached + new positions (B, past + S). ``prefix`` (B, S) bool, True = prefix
        (source) position, is required by and only used with the ``prefix`` pattern; once a cache holds
        the prefix, new positions are target positions (causal) and ``prefix`` is not needed.
        ``position_ids`` (B, S) int64, the batch's explicit positions, is context for attention parts
        that apply a positional scheme to q/k (rotary); others ignore it.
        """
        past = cache.length if cache is not None else 0
        # positions generated after a cached prefix are target positions: causal over everything before
        pattern = "causal" if self.mask == "prefix" and past > 0 else self.mask
        attn_mask, is_causal = attention_mask(mask, pattern, x.shape[1], past, prefix,
                                              explicit=self.position_bias is not None)
        return self._run(x, attn_mask, is_causal, past, cache)

    def _run(self, x: torch.Tensor, attn_mask, is_causal: bool, past: int, cache: KVCache | None,
             memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The layers and the final norm, with the position bias (if any) folded into ``attn_mask``."""
        if self.position_bias is not None:
            attn_mask = with_bias(attn_mask, self.position_bias(x.shape[1], past).to(x.dtype))
        for i in range(self.num_layers):
            layer = self.layers[0 if self.share_layers else i]
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, attn_mask, is_causal, memory, memory_mask, use_reentrant=False)
            else:
                x = layer(x, attn_mask, is_causal, memory, memory_mask, cache, i)
        return x if self.final_norm is None else self.final_norm(x)
