"""Embeddings: ``forward(batch) -> (x: (B, S, D), mask: (B, S) bool | None)``; parts:
``forward(batch, x, mask) -> (x, mask)``."""
from uer.embeddings.dual import DualEmbedding
from uer.embeddings.embedding import Embedding
from uer.embeddings.patch import PatchEmbedding
from uer.embeddings.position import PositionEmbedding
from uer.embeddings.segment import SegmentEmbedding
from uer.embeddings.single_stream import SingleStreamEmbedding
from uer.embeddings.sinusoidal import SinusoidalPositionEmbedding
from uer.embeddings.speech import SpeechEmbedding
from uer.embeddings.word import WordEmbedding

__all__ = ["DualEmbedding", "Embedding", "PatchEmbedding", "PositionEmbedding", "SegmentEmbedding",
           "SingleStreamEmbedding", "SinusoidalPositionEmbedding", "SpeechEmbedding",
           "WordEmbedding"]
