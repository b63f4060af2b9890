"""Building blocks shared by embeddings, encoders, decoders and targets. The parts a Transformer
stack is composed of are exported here, so a config names them ``uer.layers.<Class>``."""
from uer.layers.attention import MultiHeadAttention
from uer.layers.feedforward import FeedForward
from uer.layers.norms import LayerNorm, RMSNorm
from uer.layers.rotary import RotaryEmbedding
from uer.layers.transformer_layer import TransformerLayer

__all__ = ["FeedForward", "LayerNorm", "MultiHeadAttention", "RMSNorm", "RotaryEmbedding", "TransformerLayer"]
