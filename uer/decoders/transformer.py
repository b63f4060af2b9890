"""The Transformer decoder stack (Vaswani et al. 2017): causal self-attention, cross-attention to the
encoder memory and FFN per layer, built from the same part factories as the encoder (T5, BART,
PEGASUS, the original Transformer)."""
from __future__ import annotations

import torch

from uer.encoders.transformer import TransformerEncoder
from uer.layers.attention import attention_mask
from uer.layers.kv_cache import KVCache


class TransformerDecoder(TransformerEncoder):
    """A causal :class:`~uer.encoders.TransformerEncoder` whose layers also attend to a memory.

    ``forward(y: (B, T, D), y_mask: (B, T) bool | None, memory: (B, S, D), memory_mask: (B, S) bool |
    None, *, cache=None, position_ids=None) -> (B, T, D)``. Parameters: ``layers.{i}.attention.qkv``,
    ``layers.{i}.cross_attention.q`` / ``.kv`` (rows [k; v]) / ``.out``, ``layers.{i}.cross_attention_norm``,
    ``layers.{i}.ffn.*``, ``final_norm``, ``position_bias`` (T5: causal buckets).

    Args: those of :class:`~uer.encoders.TransformerEncoder` except ``mask`` (always causal) and
    ``share_layers``; each layer's cross-attention is ``attention(cross=True)``.
    """

    cross_attention = True

    def __init__(self, **kwargs):
        super().__init__(mask="causal", **kwargs)

    def forward(self, y: torch.Tensor, y_mask: torch.Tensor | None, memory: torch.Tensor,
                memory_mask: torch.Tensor | None, *, cache: KVCache | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """With a ``cache``, ``y`` holds only the new positions, ``y_mask`` covers cached + new
        positions (B, past + T), and the memory's keys/values are computed at the first call only.
        ``position_ids`` (B, T): context for the self-attention, as in the encoder."""
        past = cache.length if cache is not None else 0
        attn_mask, is_causal = attention_mask(y_mask, "causal", y.shape[1], past,
                                              explicit=self.position_bias is not None)
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :].bool()
        return self._run(y, attn_mask, is_causal, past, cache, memory, cross_mask, position_ids=position_ids)
