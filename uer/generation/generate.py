"""``generate(model, batch, ...)``: new tokens from a causal LM (GPT-2) or an encoder-decoder (T5,
BART) by greedy search, beam search or sampling, with Hugging Face's conventions (left-padded
prompts, EOS stopping per row, padding after EOS)."""
from __future__ import annotations

import torch
from torch import nn

from uer.errors import UerError
from uer.generation.sampling import Sampler
from uer.generation.search import beam_search, decode_tokens, greedy
from uer.generation.states import CausalLmState, DecodingState, EncoderDecoderState

STRATEGIES = ("greedy", "beam", "sample")


def is_encoder_decoder(model: nn.Module) -> bool:
    """True for a model with a decoder (T5, BART), False for a causal LM (GPT-2).

    Raises:
        UerError: neither: the model cannot generate (e.g. BERT's fully visible encoder).
    """
    if getattr(model, "decoder", None) is not None:
        return True
    if getattr(model.encoder, "mask", None) == "causal":
        return False
    raise UerError(f"the model cannot generate: it has no decoder and its encoder is not causal "
                   f"(mask {getattr(model.encoder, 'mask', None)!r}); use a causal LM (gpt2) or an encoder-decoder")


def decoding_state(model: nn.Module, batch: dict[str, torch.Tensor], use_cache: bool = True,
                   decoder_start_token_id: int | None = None) -> DecodingState:
    """The :class:`~uer.generation.states.DecodingState` for ``model`` and ``batch``.

    ``batch``: ``input_ids`` (B, S) and optionally ``attention_mask`` (B, S) (1 = real token; for a
    causal LM the prompts may be padded on either side); an encoder-decoder takes whatever source
    fields its embedding reads (S2T: ``input_features`` (B, F, C) and the frame mask).

    Raises:
        UerError: the model cannot generate, or an encoder-decoder without ``decoder_start_token_id``.
    """
    if is_encoder_decoder(model):
        if decoder_start_token_id is None:
            raise UerError("an encoder-decoder needs decoder_start_token_id (T5: the pad id, BART: the eos id)")
        return EncoderDecoderState(model, batch, decoder_start_token_id, use_cache)
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return CausalLmState(model, input_ids, attention_mask, use_cache)


@torch.no_grad()
def generate(model: nn.Module, batch: dict[str, torch.Tensor], max_new_tokens: int = 20, strategy: str = "greedy",
             num_beams: int = 4, length_penalty: float = 1.0, early_stopping: bool = True, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_token_id: int | None = None,
             pad_token_id: int = 0, decoder_start_token_id: int | None = None, seed: int = 0,
             use_cache: bool = True) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens per row of ``batch``.

    Args:
        model: a :class:`~uer.models.model.Model` that is a causal LM or an encoder-decoder; it is
            run in eval mode (its mode is restored afterwards).
        batch: ``input_ids`` (B, S), optional ``attention_mask`` (B, S). For a causal LM these are
            the prompts (padded on either side); for an encoder-decoder, the source (speech:
            ``input_features`` (B, F, C) and ``attention_mask`` (B, F)).
        strategy: ``greedy`` (argmax), ``beam`` (``num_beams``, ``length_penalty``, ``early_stopping``,
            see :func:`~uer.generation.search.beam_search`) or ``sample`` (``temperature``, ``top_k``,
            ``top_p``, drawn from a ``torch.Generator`` seeded with ``seed``).
        eos_token_id: a row stops after producing it (None = always ``max_new_tokens``).
        pad_token_id: fills rows after their EOS.
        decoder_start_token_id: the first decoder input of an encoder-decoder (T5: pad, BART: eos).
        use_cache: keep keys/values of past positions (each step costs one position) instead of
            recomputing the whole sequence; both give the same tokens.

    Returns:
        (B, N) int64 new tokens, N <= ``max_new_tokens`` (the longest row), padded after EOS.

    Raises:
        UerError: unknown strategy, bad sizes or sampling options, a model that cannot generate.
    """
    if strategy not in STRATEGIES:
        raise UerError(f"unknown generation strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if max_new_tokens < 1:
        raise UerError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if strategy == "beam" and num_beams < 1:
        raise UerError(f"num_beams must be >= 1, got {num_beams}")
    generator = torch.Generator(next(iter(batch.values())).device).manual_seed(seed)
    try:
        sampler = Sampler(temperature, top_k, top_p, generator)  # validates the options for every strategy
    except ValueError as e:
        raise UerError(str(e)) from None
    was_training = model.training
    model.eval()
    try:
        state = decoding_state(model, batch, use_cache, decoder_start_token_id)
        if strategy == "beam":
            return beam_search(state, num_beams, max_new_tokens, eos_token_id, pad_token_id, length_penalty,
                               early_stopping)
        return decode_tokens(state, sampler if strategy == "sample" else greedy, max_new_tokens, eos_token_id, pad_token_id)
    except ValueError as e:  # e.g. prompt + new tokens longer than the model's positions
        raise UerError(f"cannot generate {max_new_tokens} new tokens: {e}") from None
    finally:
        model.train(was_training)
