"""Documents with bos/eos packed into fixed-length blocks for decoder-only LMs (processor ``llm_pretrain``).

LLaMA (Touvron et al. 2023) pretraining: every document is tokenized as ``bos + tokens + eos``
(bos/eos fall back to the tokenizer's cls/sep), the documents of a shard are concatenated and cut into
blocks of exactly ``seq_length`` tokens; a document that does not fit continues in the next block, and
the last, shorter block of a shard is kept, so packing loses no token. The corpus formats are those
of ``data=lm`` (:mod:`uer.preprocess.corpus`: a document per line, or blank-line separated
documents whose lines are concatenated). Each block records where its documents begin, so the
collator (:class:`uer.data.packing.PackedLm`) can keep them from attending to each other.

Row columns: ``input_ids`` (int32, ``seq_length`` tokens, the last block of a shard possibly fewer)
and ``document_lengths`` (int32, the tokens of each document piece in the block, summing to its length).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar

import pyarrow as pa
from uer.preprocess.processor import TOKEN_IDS, TextProcessor, special_id


@dataclass
class LlmPretrainProcessor(TextProcessor):
    """Processor ``llm_pretrain``: bos + document + eos, packed into blocks of ``seq_length`` tokens."""

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("document_lengths", TOKEN_IDS)])
    default_tokenizer: ClassVar[str | None] = "builtin:kjv-bpe"

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        bos_id = special_id(tokenizer, self.name, "bos", "cls")
        eos_id = special_id(tokenizer, self.name, "eos", "sep")
        wrapped = ([bos_id, *chain.from_iterable(document), eos_id] for document in documents)
        for block, lengths in pack_documents(wrapped, self.seq_length):
            yield {"input_ids": block, "document_lengths": lengths}


def pack_documents(documents: Iterable[list[int]], size: int) -> Iterator[tuple[list[int], list[int]]]:
    """Concatenate ``documents`` (token id lists) and cut the stream into blocks of ``size`` tokens
    (the last may be shorter). Yields ``(block, lengths)``: the block and the token count of each
    document piece in it, in order (a document cut by a block boundary gives a piece to each block)."""
    block: list[int] = []
    lengths: list[int] = []
    for document in documents:
        while document:
            piece, document = document[:size - len(block)], document[size - len(block):]
            block += piece
            lengths.append(len(piece))
            if len(block) == size:
                yield block, lengths
                block, lengths = [], []
    if block:
        yield block, lengths
