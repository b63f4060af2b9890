"""Source + target sequences for prefix language modeling (processor ``prefixlm``).

Raffel et al. 2020 (T5, section 3.2.1) train a decoder-only "prefix LM" on text split into a prefix
(fully visible) and a continuation (causal, the only loss); UniLM (Dong et al. 2019) does the same
for sequence-to-sequence pairs. Two sources, chosen by ``prefix_format``:

- ``random``: documents joined with eos, cut into blocks of ``seq_length`` tokens, and each block
  split at a uniformly random token boundary (blocks of one token are dropped);
- ``tab``: ``source<TAB>target`` lines (checked as in processor ``mt``, with ``invalid_pairs``);
  each row is source [SEP] target [eos] ([SEP] falls back to eos), the pair shortened to fit
  ``seq_length`` one token at a time from the longer side.

Row columns: ``input_ids`` (int32) and ``token_type_ids`` (int32, 0 on the source and its
separator, 1 on the target and its eos).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.errors import UerError
from uer.preprocess.corpus import Shard, iter_documents
from uer.preprocess.full_sentences import joined
from uer.preprocess.parallel import PairsProcessor, encode_pairs, iter_pairs
from uer.preprocess.processor import TOKEN_IDS, Plan, TextProcessor, pack, special_id, tokenize_documents
from uer.preprocess.sentence_pair import truncate_pair

FORMATS = ("random", "tab")


@dataclass
class PrefixLmProcessor(PairsProcessor):
    """Processor ``prefixlm``; ``prefix_format`` is random | tab (see the module docstring)."""

    prefix_format: str = "random"

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("token_type_ids", TOKEN_IDS)])
    default_tokenizer: ClassVar[str | None] = "builtin:kjv-bpe"
    min_seq_length: ClassVar[int] = 4

    def __post_init__(self):
        super().__post_init__()
        if self.prefix_format not in FORMATS:
            raise UerError(f"data.prefix_format: unknown value {self.prefix_format!r}; valid: {', '.join(FORMATS)}")

    def plan(self) -> Plan:
        return super().plan() if self.prefix_format == "tab" else TextProcessor.plan(self)

    def generate(self, shard: Shard, tokenizer) -> Iterator[dict]:
        rng = random.Random(f"{self.seed}:{shard.index}")
        if self.prefix_format == "random":
            eos_id = special_id(tokenizer, self.name, "eos", "sep")
            documents = tokenize_documents(iter_documents(shard), tokenizer)
            for block in pack(joined(documents, eos_id), self.seq_length):
                if len(block) >= 2:
                    cut = rng.randint(1, len(block) - 1)
                    yield {"input_ids": block, "token_type_ids": [0] * cut + [1] * (len(block) - cut)}
            return
        sep_id = special_id(tokenizer, self.name, "sep", "eos")
        eos_id = special_id(tokenizer, self.name, "eos", "sep")
        for source, target in encode_pairs(list(iter_pairs(shard)), tokenizer, tokenizer):
            truncate_pair(source, target, self.seq_length - 2, rng)
            yield {"input_ids": [*source, sep_id, *target, eos_id],
                   "token_type_ids": [0] * (len(source) + 1) + [1] * (len(target) + 1)}
