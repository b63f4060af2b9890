"""Text generation from causal LMs and encoder-decoders: greedy, beam search, sampling."""
from uer.generation.generate import generate, is_encoder_decoder
from uer.generation.sampling import Sampler, top_k_filter, top_p_filter

__all__ = ["Sampler", "generate", "is_encoder_decoder", "top_k_filter", "top_p_filter"]
