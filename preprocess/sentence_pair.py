"""Sentence-pair instances for BERT (next sentence prediction) and ALBERT (sentence order prediction).

Follows the instance recipe of BERT (Devlin et al. 2019, Google's ``create_pretraining_data.py``) and
ALBERT (Lan et al. 2020): per document, draw a target length (``seq_length - 3`` tokens, or with
probability ``short_seq_prob`` a random length in ``[2, seq_length - 3]``), gather consecutive
sentences until the target is reached, and split them at a random sentence boundary into A and B.

- NSP (``bert``): with probability 0.5 B is replaced by text from a random other document of the
  shard (label 1; the sentences of the true B go back to be used again), else B is the true
  continuation (label 0).
- SOP (``albert``): with probability 0.5 A and B are swapped (label 1), else kept (label 0).

The pair is then truncated to ``seq_length - 3`` tokens, one token at a time from the longer side,
from its front or back at random. One difference from the references: a chunk of a single sentence
is split inside the sentence at a random token, so one-sentence documents (``lines`` format) still
give true pairs instead of always random ones.

Row columns: ``input_ids`` = [CLS] A [SEP] B [SEP] (int32), ``token_type_ids`` = 0 over [CLS] A [SEP]
and 1 over B [SEP] (int32), ``next_sentence_label`` (int64, 0 or 1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.errors import UerError
from uer.preprocess.processor import TOKEN_IDS, TextProcessor, special_id

Pair = tuple[list[int], list[int], int, int]
"""(tokens A, tokens B, label, number of sentences to put back)."""


@dataclass
class SentencePairProcessor(TextProcessor):
    """Options and instance builder shared by NSP and SOP; subclasses decide the pair (``make_pair``).

    ``short_seq_prob``: probability of a shorter target length (BERT's default 0.1).
    """

    short_seq_prob: float = 0.1

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("token_type_ids", TOKEN_IDS),
                                              ("next_sentence_label", pa.int64())])
    min_seq_length: ClassVar[int] = 5

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UerError(f"data.short_seq_prob: must be in [0, 1], got {self.short_seq_prob!r}")

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        cls_id = special_id(tokenizer, self.name, "cls")
        sep_id = special_id(tokenizer, self.name, "sep")
        budget = self.seq_length - 3
        for index, document in enumerate(documents):
            target = rng.randint(2, budget) if rng.random() < self.short_seq_prob else budget
            chunk: list[list[int]] = []
            length = position = 0
            while position < len(document):
                chunk.append(document[position])
                length += len(document[position])
                position += 1
                if position < len(document) and length < target:
                    continue
                pair = self.make_pair(chunk, documents, index, target, rng)
                chunk, length = [], 0
                if pair is None:
                    continue
                first, second, label, put_back = pair
                position -= put_back
                truncate_pair(first, second, budget, rng)
                yield {"input_ids": [cls_id, *first, sep_id, *second, sep_id],
                       "token_type_ids": [0] * (len(first) + 2) + [1] * (len(second) + 1),
                       "next_sentence_label": label}

    def make_pair(self, chunk: list[list[int]], documents, index: int, target: int,
                  rng: random.Random) -> Pair | None:
        """Build (A, B, label, sentences put back) from a chunk of document ``index``, or None."""
        raise NotImplementedError


def split_chunk(chunk: list[list[int]], rng: random.Random) -> tuple[list[int], list[int], int] | None:
    """Split consecutive sentences into A and B at a random sentence boundary (inside the sentence,
    at a random token, when there is one sentence). Returns (A, B, sentences in B), or None when the
    chunk is a single token."""
    if len(chunk) >= 2:
        cut = rng.randint(1, len(chunk) - 1)
        return list(chain.from_iterable(chunk[:cut])), list(chain.from_iterable(chunk[cut:])), len(chunk) - cut
    tokens = chunk[0]
    if len(tokens) < 2:
        return None
    cut = rng.randint(1, len(tokens) - 1)
    return tokens[:cut], tokens[cut:], 0


def truncate_pair(first: list[int], second: list[int], budget: int, rng: random.Random) -> None:
    """Shorten A and B in place until ``len(A) + len(B) <= budget``: remove one token at a time from
    the longer one (B on ties), from its front or back with equal probability. The removals are
    counted first and cut in one slice per end, so a very long sentence costs linear time."""
    lengths, cuts = [len(first), len(second)], [[0, 0], [0, 0]]  # per side: [front, back] removals
    while lengths[0] + lengths[1] > budget:
        side = 0 if lengths[0] > lengths[1] else 1
        lengths[side] -= 1
        cuts[side][0 if rng.random() < 0.5 else 1] += 1
    for tokens, (front, back) in zip((first, second), cuts):
        del tokens[len(tokens) - back:]
        del tokens[:front]


@dataclass
class NspProcessor(SentencePairProcessor):
    """Processor ``bert``: pairs labelled for next sentence prediction (1 = B is random)."""

    def make_pair(self, chunk, documents, index, target, rng) -> Pair | None:
        split = split_chunk(chunk, rng)
        if split is None:
            return None
        first, second, sentences = split
        if len(documents) < 2 or rng.random() >= 0.5:
            return first, second, 0, 0
        other = rng.randrange(len(documents) - 1)
        other += other >= index
        document = documents[other]
        random_second: list[int] = []
        for sentence in document[rng.randrange(len(document)):]:
            random_second.extend(sentence)
            if len(random_second) >= target - len(first):
                break
        return first, random_second, 1, sentences


@dataclass
class SopProcessor(SentencePairProcessor):
    """Processor ``albert``: pairs labelled for sentence order prediction (1 = A and B swapped)."""

    def make_pair(self, chunk, documents, index, target, rng) -> Pair | None:
        split = split_chunk(chunk, rng)
        if split is None:
            return None
        first, second, _ = split
        if rng.random() < 0.5:
            return second, first, 1, 0
        return first, second, 0, 0
