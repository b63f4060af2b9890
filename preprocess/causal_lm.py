"""GPT-2 style packed instances for causal language modelling (processor ``lm``).

Radford et al. 2019 (GPT-2) train on contiguous blocks of text with ``<|endoftext|>`` between
documents. Here every document of a shard is followed by the eos token (or [SEP] if the tokenizer
has no eos), all of it is concatenated and cut into blocks of exactly ``seq_length`` tokens; the
last, shorter block of a shard is kept. The concatenation of a shard's blocks is therefore exactly
the concatenation of (document tokens + eos): packing loses no token. Labels are the inputs shifted
by one, made in the collator/target.

Row column: ``input_ids`` (int32, ``seq_length`` tokens, the last block of a shard possibly fewer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.preprocess.processor import TOKEN_IDS, TextProcessor, pack, special_id


@dataclass
class CausalLmProcessor(TextProcessor):
    """Processor ``lm``: documents + eos packed into blocks of ``seq_length`` tokens."""

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS)])
    default_tokenizer: ClassVar[str | None] = "builtin:kjv-bpe"

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        eos_id = special_id(tokenizer, self.name, "eos", "sep")
        stream = chain.from_iterable(chain(chain.from_iterable(document), (eos_id,)) for document in documents)
        for block in pack(stream, self.seq_length):
            yield {"input_ids": block}
