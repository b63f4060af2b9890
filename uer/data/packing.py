"""Batches of packed documents for decoder-only language models (``data=llm_pretrain``, ``data=llm_sft``).

A row holds one block of ``input_ids`` in which several documents (or SFT conversations) follow one
another, ``document_lengths`` (the token count of each, summing to the block's length; a document cut
by the block boundary counts as one in each block) and, for SFT, ``labels`` (-100 off the answers).

With ``document_mask`` (the default) the documents of a block stay apart, as if each were its own
sequence: ``position_ids`` restart at 0 at each document, and the model's causal stack reads the
restarts as document boundaries (:func:`uer.layers.attention.packed_documents`), so a token attends
only to earlier tokens of its own document (a block-diagonal causal mask through SDPA), and rotary or
learned positions count from the document's start. The first token of a document is then never a
target (its label is -100): predicting it from the previous document's last token (its eos) would
cross the boundary the mask forbids. This is what transformers' ``DataCollatorWithFlattening``
does (``labels`` of each sequence's first token -100, ``position_ids`` restarting). Without
``document_mask`` a block is one sequence (GPT-2's packing, Radford et al. 2019): positions run
through it, every token attends to all before it and every next token is a target.

Labels are masked by position, never by id, so a pad id equal to the eos id (GPT-2's
``<|endoftext|>``) does not hide the eos targets. Padding (the last, shorter block of a shard) gets
label -100, ``attention_mask`` 0, and positions that count on from the last document, which keeps it
inside that document (no query of a padded position is left without a key).
"""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.errors import UerError


def document_positions(lengths: list[int], width: int) -> np.ndarray:
    """(width,) int64 positions of one row: 0 .. n-1 for each document of ``lengths`` in turn, then
    counting on from the last document over the padding up to ``width``."""
    positions = np.arange(width, dtype=np.int64)
    starts = np.cumsum([0, *lengths[:-1]])
    for start, length in zip(starts, lengths):
        positions[start:start + length] -= start
    if lengths:
        positions[starts[-1] + lengths[-1]:] -= starts[-1]
    return positions


class PackedLm:
    """The collator of ``data=llm_pretrain`` and ``data=llm_sft`` (see the module docstring).

    ``__call__(rows: {input_ids, document_lengths[, labels]}, rngs) -> {input_ids (B, S), labels
    (B, S), position_ids (B, S) with document_mask, attention_mask (B, S) only when some row is
    padded}``. ``rngs`` is unused: the batches are not random.

    Args:
        tokenizer: gives the pad id (its pad token, else its eos token).
        document_mask: keep the documents of a block from attending to each other.

    Raises:
        UerError: the tokenizer has neither a pad nor an eos token.
        TypeError: ``document_mask`` is not a bool.
    """

    def __init__(self, tokenizer, document_mask: bool = True):
        if not isinstance(document_mask, bool):
            raise TypeError(f"data.document_mask: must be true or false, got {document_mask!r}")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise UerError("data.tokenizer: packed LM data needs a pad or eos token")
        self.document_mask = document_mask

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        ids, attention = pad(rows["input_ids"], self.pad_id)
        labels = pad(rows["labels"], -100)[0] if "labels" in rows else ids.copy()
        if attention is not None:
            labels[attention == 0] = -100
        batch = {"input_ids": torch.from_numpy(ids)}
        if self.document_mask:
            positions = np.stack([document_positions(list(lengths), ids.shape[1]) for lengths in rows["document_lengths"]])
            labels[(positions == 0) & (np.arange(ids.shape[1]) > 0)] = -100  # documents' first tokens
            batch["position_ids"] = torch.from_numpy(positions)
        if attention is not None:
            batch["attention_mask"] = torch.from_numpy(attention)
        batch["labels"] = torch.from_numpy(labels)
        return batch
