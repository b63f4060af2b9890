"""The Transformer encoder stack. One class covers BERT (post-LN, fully visible), GPT-2 (pre-LN,
causal, final norm), ViT (pre-LN, fully visible) and ALBERT (cross-layer parameter sharing,
Lan et al. 2020) through options."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from uer.layers.attention import attention_mask
from uer.layers.norms import make_norm
from uer.layers.transformer_layer import TransformerLayer


class TransformerEncoder(nn.Module):
    """A stack of :class:`~uer.layers.transformer_layer.TransformerLayer`.

    ``forward(x: (B, S, D), mask: (B, S) bool | None) -> (B, S, D)``; ``mask`` True = real token,
    None = no padding.

    Args:
        dim, num_layers, num_heads, ffn_dim: sizes (D, L, H, inner FFN width).
        dropout, attention_dropout: dropout probabilities.
        activation, gated_ffn, norm, norm_eps, norm_position, bias: per-layer options.
        mask: attention pattern, ``fully_visible`` or ``causal``.
        final_norm: apply a norm after the last layer (None = exactly when ``norm_position`` is pre,
            as in GPT-2 and ViT).
        share_layers: one set of layer weights applied ``num_layers`` times (ALBERT).
        gradient_checkpointing: recompute layer activations in backward to save memory.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation: str = "gelu", gated_ffn: bool = False,
                 norm: str = "layernorm", norm_eps: float = 1e-12, norm_position: str = "post",
                 bias: bool = True, mask: str = "fully_visible", final_norm: bool | None = None,
                 share_layers: bool = False, gradient_checkpointing: bool = False):
        super().__init__()
        self.num_layers = num_layers
        self.mask = mask
        self.share_layers = share_layers
        self.gradient_checkpointing = gradient_checkpointing
        attention_mask(None, mask, 1)  # validates the pattern name at build time
        n_distinct = 1 if share_layers else num_layers
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, ffn_dim, dropout, attention_dropout, activation, gated_ffn,
                             norm, norm_eps, norm_position, bias)
            for _ in range(n_distinct))
        if final_norm is None:
            final_norm = norm_position == "pre"
        self.final_norm = make_norm(norm, dim, norm_eps) if final_norm else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, D), mask: (B, S) bool or None -> (B, S, D)."""
        attn_mask, is_causal = attention_mask(mask, self.mask, x.shape[1])
        for i in range(self.num_layers):
            layer = self.layers[0 if self.share_layers else i]
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, attn_mask, is_causal, use_reentrant=False)
            else:
                x = layer(x, attn_mask, is_causal)
        return x if self.final_norm is None else self.final_norm(x)
