"""Decoding states: what a search algorithm drives, one per kind of model (causal LM, encoder-decoder),
each with or without a key/value cache.

A state holds B running sequences and answers three calls:

- ``start() -> (B, V)``: run the prompt (or the encoder and the decoder start token) and return the
  logits of the first new token;
- ``step(tokens: (B,)) -> (B, V)``: append one token to every sequence and return the next logits;
- ``reorder(index: (B',))``: keep sequence ``index[i]`` as row i (beam search expands and reorders).
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from uer.errors import UerError
from uer.layers.kv_cache import KVCache


class DecodingState(Protocol):
    """The interface of the states below (see the module docstring)."""

    def start(self) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, index: torch.Tensor) -> None: ...


def left_padded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's padding to the left, keeping the order of its real tokens: (B, S), (B, S) ->
    the same shapes."""
    order = torch.argsort(attention_mask, dim=1, stable=True)
    return input_ids.gather(1, order), attention_mask.gather(1, order)


class CausalLmState:
    """A causal LM (GPT-2: causal encoder + LM head) decoding B left-padded prompts.

    Positions are numbered from each row's first real token (``position_ids`` = cumsum(mask) - 1,
    as Hugging Face does for left padding), so a padded row generates what it would alone. With a
    :class:`~uer.layers.kv_cache.KVCache` each step runs only the new token; without one, every step
    re-encodes the whole sequence (exact and slow: the reference for the cached path).

    Args:
        model: a :class:`~uer.models.model.Model` with a causal encoder and an LM head.
        input_ids, attention_mask: (B, S) prompts, 1 = real token, padded on either side (right
            padding is moved to the left first, so that new tokens follow every prompt directly).
        use_cache: keep keys/values of past positions.

    Raises:
        UerError: a prompt with no real token.
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 use_cache: bool = True):
        if not attention_mask.bool().any(dim=1).all():
            raise UerError("every prompt needs at least one token (e.g. the bos token)")
        self.model = model
        self.ids, self.mask = left_padded(input_ids, attention_mask.long())
        self.positions = (self.mask.cumsum(dim=1) - 1).clamp(min=0)
        self.cache = KVCache() if use_cache else None
        self.new = input_ids.shape[1]  # positions the next forward pass must run

    def _next_logits(self) -> torch.Tensor:
        run = slice(-self.new, None) if self.cache is not None else slice(None)
        batch = {"input_ids": self.ids[:, run], "attention_mask": self.mask, "position_ids": self.positions[:, run]}
        hidden, _ = self.model.encode(batch, cache=self.cache)
        return self.model.logits(hidden[:, -1])

    def start(self) -> torch.Tensor:
        return self._next_logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)
        self.new = 1
        return self._next_logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.ids, self.mask, self.positions = self.ids[index], self.mask[index], self.positions[index]
        if self.cache is not None:
            self.cache.reorder(index)


class EncoderDecoderState:
    """An encoder-decoder (T5, BART): the source is encoded once; the decoder starts from
    ``decoder_start_token_id`` and, with a :class:`~uer.layers.kv_cache.KVCache`, runs one position per
    step (cross-attention keys/values of the memory computed once); without one it re-runs the
    whole target prefix each step.

    Args:
        model: a :class:`~uer.models.model.Model` with a decoder and an LM head.
        source: the encoder's fields: ``input_ids`` (B, S) or ``input_features`` (B, F, C) (speech),
            with ``attention_mask`` (1 = real token or frame).
        decoder_start_token_id: the first decoder input (T5: pad, BART and S2T: eos).
        use_cache: keep keys/values of past positions.
    """

    def __init__(self, model: nn.Module, source: dict[str, torch.Tensor], decoder_start_token_id: int,
                 use_cache: bool = True):
        self.model = model
        self.memory, self.memory_mask = model.encode(source)
        self.ids = torch.full((self.memory.shape[0], 1), decoder_start_token_id, dtype=torch.long,
                              device=self.memory.device)
        self.cache = KVCache() if use_cache else None

    def _next_logits(self) -> torch.Tensor:
        ids = self.ids[:, -1:] if self.cache is not None else self.ids
        hidden = self.model.decode({"decoder_input_ids": ids}, self.memory, self.memory_mask, cache=self.cache)
        return self.model.logits(hidden[:, -1])

    def start(self) -> torch.Tensor:
        return self._next_logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        return self._next_logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.ids, self.memory, self.memory_mask = self.ids[index], self.memory[index], self.memory_mask[index]
        if self.cache is not None:
            self.cache.reorder(index)
