"""Encoders: ``forward(x: (B, S, D), mask: (B, S) bool | None) -> (B, S, D)``."""
from uer.encoders.dual import DualEncoder
from uer.encoders.transformer import TransformerEncoder

__all__ = ["DualEncoder", "TransformerEncoder"]
