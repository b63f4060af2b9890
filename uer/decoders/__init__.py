"""Decoders: ``forward(y: (B, T, D), y_mask, memory: (B, S, D), memory_mask, cache=None) -> (B, T, D)``."""
from uer.decoders.transformer import TransformerDecoder

__all__ = ["TransformerDecoder"]
