"""Blocks of whole sentences for BART denoising (processor ``bart``) and PEGASUS gap sentences
(processor ``gsg``).

Both objectives need sentence boundaries at training time: BART permutes sentences (Lewis et al.
2020), PEGASUS masks whole sentences (Zhang et al. 2020). Here consecutive sentences (lines) of one
document are gathered into blocks of at most ``seq_length - 2`` tokens (room for bos/eos); a
sentence longer than that is cut into pieces, each counted as a sentence. Blocks never cross a
document boundary. The noise is applied later, in the collator, anew at each draw.

Row columns: ``input_ids`` (int32, the block's tokens, no special tokens) and ``sentence_lengths``
(int32, tokens per sentence, summing to the length of ``input_ids``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.preprocess.processor import TOKEN_IDS, TextProcessor, pack


@dataclass
class SentenceBlocksProcessor(TextProcessor):
    """Processors ``bart`` and ``gsg``: documents cut into blocks of whole sentences."""

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("sentence_lengths", TOKEN_IDS)])
    min_seq_length: ClassVar[int] = 3

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        budget = self.seq_length - 2
        for document in documents:
            block: list[list[int]] = []
            for piece in chain.from_iterable(pack(sentence, budget) for sentence in document):
                if block and sum(map(len, block)) + len(piece) > budget:
                    yield row(block)
                    block = []
                block.append(piece)
            if block:
                yield row(block)


def row(sentences: list[list[int]]) -> dict:
    """The row of a block of sentences."""
    return {"input_ids": list(chain.from_iterable(sentences)), "sentence_lengths": [len(s) for s in sentences]}
