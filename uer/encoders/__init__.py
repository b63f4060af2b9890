"""Encoders: ``forward(x: (B, S, D), mask: (B, S) bool | None) -> (B, S, D)``."""
from uer.encoders.cnn import GatedCnnEncoder
from uer.encoders.dual import DualEncoder
from uer.encoders.rnn import RnnEncoder
from uer.encoders.transformer import TransformerEncoder

__all__ = ["DualEncoder", "GatedCnnEncoder", "RnnEncoder", "TransformerEncoder"]
