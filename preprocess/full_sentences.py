"""RoBERTa FULL-SENTENCES instances for masked language modelling (processor ``mlm``).

Liu et al. 2019 (RoBERTa, section 4.2): inputs are packed with full sentences sampled contiguously
from one or more documents, crossing document boundaries with an extra separator token between
documents. Here the tokens of a shard's consecutive documents are joined with a separator ([SEP],
or the eos token if the tokenizer has no [SEP]) between documents, cut into blocks of
``seq_length - 2`` tokens, and each block is wrapped as [CLS] block [SEP] ([CLS] falls back to bos).
The last, shorter block of a shard is kept, so no token is lost. Masking happens later, in the
collator.

Row column: ``input_ids`` (int32, at most ``seq_length`` tokens).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.preprocess.processor import TOKEN_IDS, TextProcessor, pack, special_id


@dataclass
class FullSentencesProcessor(TextProcessor):
    """Processor ``mlm``: documents packed into blocks of ``seq_length`` tokens with [CLS]/[SEP]."""

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS)])
    min_seq_length: ClassVar[int] = 3

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        start_id = special_id(tokenizer, self.name, "cls", "bos")
        end_id = special_id(tokenizer, self.name, "sep", "eos")
        for block in pack(joined(documents, end_id), self.seq_length - 2):
            yield {"input_ids": [start_id, *block, end_id]}


def joined(documents: list[list[list[int]]], separator: int) -> Iterator[int]:
    """The token stream of all documents with ``separator`` between consecutive documents."""
    for index, document in enumerate(documents):
        if index:
            yield separator
        for sentence in document:
            yield from sentence
