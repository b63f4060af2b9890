"""Encoder-decoder batches: (source, target) token rows -> padded encoder inputs, shifted decoder
inputs and labels, with Hugging Face's field names and ``shift_tokens_right`` convention.

The batch of every encoder-decoder objective (``t5``, ``bart``, ``gsg``, ``mt``):

- ``input_ids`` (B, S), ``attention_mask`` (B, S): the source, right-padded, 1 = real token;
- ``labels`` (B, T): the target, -100 on padding;
- ``decoder_input_ids`` (B, T) = [decoder_start] + labels[:-1] (padding -> pad id), and
  ``decoder_attention_mask`` (B, T), 1 where the label is real.

Masks are always present (unlike the causal collator's), so the model never guesses them.
"""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.errors import UerError

IGNORE_INDEX = -100
ROLE_FALLBACKS = {"pad": ("pad",), "eos": ("eos", "sep"), "bos": ("bos", "cls")}
"""``data.decoder_start`` values and the tokenizer roles each takes, first defined wins ([SEP] stands
in for eos and [CLS] for bos in BERT vocabularies)."""


def role_id(tokenizer, role: str, key: str = "data.decoder_start") -> int:
    """The id of special-token ``role`` (one of `ROLE_FALLBACKS`) in ``tokenizer``.

    Raises:
        UerError: unknown role, or the tokenizer defines none of its tokens (names ``key``).
    """
    if role not in ROLE_FALLBACKS:
        raise UerError(f"{key}={role}: unknown; valid: {', '.join(ROLE_FALLBACKS)}")
    for name in ROLE_FALLBACKS[role]:
        value = getattr(tokenizer, f"{name}_token_id")
        if value is not None:
            return value
    raise UerError(f"{key}={role}: the tokenizer has no {' or '.join(ROLE_FALLBACKS[role])} token")


def shift_tokens_right(labels: np.ndarray, pad_id: int, decoder_start_id: int) -> np.ndarray:
    """Decoder inputs for teacher forcing, as Hugging Face's ``shift_tokens_right``.

    Args:
        labels: (B, T) int64 target ids, -100 on ignored positions.

    Returns:
        (B, T) int64: ``decoder_start_id`` then ``labels[:, :-1]``, with -100 replaced by ``pad_id``.
    """
    shifted = np.empty_like(labels)
    shifted[:, 0] = decoder_start_id
    shifted[:, 1:] = labels[:, :-1]
    shifted[shifted == IGNORE_INDEX] = pad_id
    return shifted


def seq2seq_batch(sources: list[list[int]], targets: list[list[int]], pad_id: int, target_pad_id: int,
                  decoder_start_id: int) -> dict[str, torch.Tensor]:
    """Pad B (source, target) pairs into the encoder-decoder batch described in the module docstring.

    Args:
        sources, targets: B token lists each (targets end with their eos already).
        pad_id, target_pad_id: padding ids of the source and target vocabularies.
        decoder_start_id: the first decoder input (T5: pad, BART: eos).
    """
    input_ids, attention = pad(sources, pad_id)
    labels, decoder_attention = pad(targets, target_pad_id)
    attention = np.ones_like(input_ids) if attention is None else attention
    decoder_attention = np.ones_like(labels) if decoder_attention is None else decoder_attention
    labels[decoder_attention == 0] = IGNORE_INDEX
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
            "decoder_input_ids": torch.from_numpy(shift_tokens_right(labels, target_pad_id, decoder_start_id)),
            "decoder_attention_mask": torch.from_numpy(decoder_attention), "labels": torch.from_numpy(labels)}


class Seq2SeqCollator:
    """Turns rows into encoder-decoder batches, one (source, target) pair per row.

    ``__call__(rows: dict[str, list], rngs) -> batch`` (fields in the module docstring). The base
    class serves parallel data (processor ``mt``: columns ``input_ids`` = source and ``labels`` =
    target, both ending with eos); denoising objectives override `make_pair`, which draws all its
    randomness from the row's own generator, so a sample does not depend on its batch neighbours.

    Args:
        pad_id, target_pad_id: padding ids of the source and target vocabularies.
        decoder_start_id: the first decoder input id.
    """

    def __init__(self, pad_id: int, target_pad_id: int, decoder_start_id: int):
        self.pad_id, self.target_pad_id, self.decoder_start_id = pad_id, target_pad_id, decoder_start_id

    def make_pair(self, row: dict[str, list], rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """(source ids, target ids) of one row."""
        return row["input_ids"], row["labels"]

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        pairs = [self.make_pair({key: column[i] for key, column in rows.items()}, rng)
                 for i, rng in enumerate(rngs)]
        return seq2seq_batch([p[0] for p in pairs], [p[1] for p in pairs], self.pad_id, self.target_pad_id,
                             self.decoder_start_id)
