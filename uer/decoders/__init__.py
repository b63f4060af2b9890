"""Decoders: ``forward(y: (B, T, D), y_mask, memory: (B, S, D), memory_mask) -> (B, T, D)``.

The Transformer decoder (self-attention + cross-attention) arrives with the encoder-decoder presets
(T5, BART); :class:`uer.models.Model` already takes ``tgt_embedding`` and ``decoder`` parts.
"""
