"""The Transformer encoder stack. One class covers BERT (post-LN, fully visible), GPT-2 (pre-LN,
causal, final norm), ViT (pre-LN, fully visible), ALBERT (cross-layer parameter sharing, Lan et al.
2020), the T5 encoder (bucketed relative position bias) and prefix LMs (Raffel et al. 2020, §3.2.1)
through stack options; what a layer is made of (attention, feed-forward, norm) comes in as factories
named in config. :class:`uer.decoders.TransformerDecoder` is the same stack with cross-attention."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from uer.layers.attention import attention_mask, packed_documents, with_bias
from uer.layers.kv_cache import KVCache
from uer.layers.relative_position import RelativePositionBias
from uer.layers.transformer_layer import TransformerLayer


class TransformerEncoder(nn.Module):
    """A stack of :class:`~uer.layers.transformer_layer.TransformerLayer` built from part factories.

    ``forward(x: (B, S, D), mask: (B, S) bool | None, *, cache=None, prefix=None, position_ids=None)
    -> (B, S, D)``; ``mask`` True = real token, None = no padding. Parameters: ``layers.{i}.*``,
    ``final_norm``, ``position_bias.weight`` (num_buckets, H) when ``relative_position_buckets`` is set.

    Args:
        attention: factory of a layer's self-attention, called with no argument (and with
            ``cross=True`` for a decoder's cross-attention), e.g. a partial
            :class:`uer.layers.attention.MultiHeadAttention`; the built module's ``num_heads`` sizes
            the relative position bias.
        ffn: factory of a layer's feed-forward (e.g. :class:`uer.layers.feedforward.FeedForward`).
        norm: factory of every norm: both (three) per layer and the final one (e.g.
            :class:`uer.layers.norms.LayerNorm`, :class:`uer.layers.norms.RMSNorm`).
        num_layers: L.
        dropout: dropout on the attention branches' outputs.
        norm_position: ``post`` (BERT) or ``pre`` (GPT-2, ViT, T5).
        mask: attention pattern, ``fully_visible``, ``causal`` or ``prefix`` (``forward`` then needs
            ``prefix``; :class:`uer.models.Model` passes it from ``token_type_ids``).
        final_norm: apply a norm after the last layer (None = exactly when ``norm_position`` is pre,
            as in GPT-2, ViT and T5).
        share_layers: one set of layer weights applied ``num_layers`` times (ALBERT).
        gradient_checkpointing: recompute layer activations in backward to save memory.
        relative_position_buckets: if set, a T5 relative position bias with this many buckets
            (bidirectional unless the pattern is causal), computed once and added in every layer.
        relative_position_max_distance: T5's ``relative_attention_max_distance``.
        position_bias: factory of another stack-wide bias, ``module(length, past) -> (1, H, T, K)``
            added in every layer, e.g. BEiT's shared 2D bias :class:`uer.layers.relative_position_2d.RelativePositionBias2d`.

    Raises:
        ValueError: unknown ``mask`` pattern or ``norm_position``; both ``position_bias`` and
            ``relative_position_buckets``.
    """

    cross_attention = False

    def __init__(self, *, attention: Callable[..., nn.Module], ffn: Callable[[], nn.Module],
                 norm: Callable[[], nn.Module], num_layers: int, dropout: float = 0.1, norm_position: str = "post",
                 mask: str = "fully_visible", final_norm: bool | None = None, share_layers: bool = False,
                 gradient_checkpointing: bool = False, relative_position_buckets: int | None = None,
                 relative_position_max_distance: int = 128, position_bias: Callable[[], nn.Module] | None = None):
        super().__init__()
        self.num_layers = num_layers
        self.mask = mask
        self.share_layers = share_layers
        self.gradient_checkpointing = gradient_checkpointing
        attention_mask(None, mask, 1, prefix=torch.ones(1, 1))  # validates the pattern name at build time
        n_distinct = 1 if share_layers else num_layers
        self.layers = nn.ModuleList(self._layer(attention, ffn, norm, dropout, norm_position)
                                    for _ in range(n_distinct))
        if final_norm is None:
            final_norm = norm_position == "pre"
        self.final_norm = norm() if final_norm else None
        if position_bias is not None and relative_position_buckets:
            raise ValueError("choose one stack-wide position bias: position_bias or relative_position_buckets")
        self.position_bias = position_bias() if position_bias is not None else None
        if relative_position_buckets:
            self.position_bias = RelativePositionBias(self.layers[0].attention.num_heads, relative_position_buckets,
                                                      relative_position_max_distance, bidirectional=mask != "causal")

    def _layer(self, attention: Callable[..., nn.Module], ffn: Callable[[], nn.Module], norm: Callable[[], nn.Module],
               dropout: float, norm_position: str) -> TransformerLayer:
        """One layer, its parts built in the order of their parameters in the state dict."""
        parts = {"attention": attention(), "attention_norm": norm()}
        if self.cross_attention:
            parts.update(cross_attention=attention(cross=True), cross_attention_norm=norm())
        parts.update(ffn=ffn(), ffn_norm=norm())
        return TransformerLayer(**parts, dropout=dropout, norm_position=norm_position)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, cache: KVCache | None = None,
                prefix: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, D), mask: (B, S) bool or None -> (B, S, D).

        With a ``cache`` (causal stacks: incremental decoding) ``x`` holds only the new positions and
        ``mask`` covers all cached + new positions (B, past + S). ``prefix`` (B, S) bool, True = prefix
        (source) position, is required by and only used with the ``prefix`` pattern; once a cache holds
        the prefix, new positions are target positions (causal) and ``prefix`` is not needed.
        ``position_ids`` (B, S) int64, the batch's explicit positions, is context for attention parts
        that apply a positional scheme to q/k (rotary); others ignore it. In a causal stack without a
        ``cache`` they also mark packed documents: where positions restart, a new document begins that
        attends only to itself (:func:`~uer.layers.attention.packed_documents`, as transformers reads
        packed batches).
        """
        past = cache.length if cache is not None else 0
        # positions generated after a cached prefix are target positions: causal over everything before
        pattern = "causal" if self.mask == "prefix" and past > 0 else self.mask
        # explicit positions of a causal stack without a cache: packed documents, each seeing only itself
        packed = pattern == "causal" and cache is None and position_ids is not None
        attn_mask, is_causal = attention_mask(mask, pattern, x.shape[1], past, prefix,
                                              explicit=self.position_bias is not None,
                                              documents=packed_documents(position_ids) if packed else None)
        return self._run(x, attn_mask, is_causal, past, cache, position_ids=position_ids)

    def _run(self, x: torch.Tensor, attn_mask, is_causal: bool, past: int, cache: KVCache | None,
             memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None, **context) -> torch.Tensor:
        """The layers and the final norm, with the position bias (if any) folded into ``attn_mask``;
        ``context`` (``position_ids``) goes to every layer's self-attention."""
        if self.position_bias is not None:
            attn_mask = with_bias(attn_mask, self.position_bias(x.shape[1], past).to(x.dtype))
        for i in range(self.num_layers):
            layer = self.layers[0 if self.share_layers else i]
            kwargs = {"memory": memory, "memory_mask": memory_mask, **context}
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, attn_mask, is_causal, use_reentrant=False, **kwargs)
            else:
                x = layer(x, attn_mask, is_causal, cache=cache, index=i, **kwargs)
        return x if self.final_norm is None else self.final_norm(x)
