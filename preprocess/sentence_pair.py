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

The shard's tokens are held in one flat array and an instance is built as spans of it (`Span`):
the random draws are those of the list-based recipe above, in the same order, and `pair_batch`
gathers whole record batches with numpy (``tests/test_preprocess.py`` checks that the batches equal
the rows of ``instances``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate, chain, islice
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa

from uer.errors import UerError
from uer.preprocess.corpus import Shard, iter_documents
from uer.preprocess.processor import TOKEN_IDS, TextProcessor, special_id, tokenize_documents

Span = tuple[int, int, int, int, int]
"""An instance as (A start, A end, B start, B end, label): A and B are ``tokens[start:end]`` of the
shard's flat token array (`flatten`)."""


def flatten(documents: list[list[list[int]]]) -> tuple[np.ndarray, list[list[int]]]:
    """The tokens of all documents as one int32 array, and for each document the offsets of its
    sentences in it (``n + 1`` for ``n`` sentences: each start, then the document's end)."""
    lengths = [len(sentence) for document in documents for sentence in document]
    tokens = np.fromiter(chain.from_iterable(chain.from_iterable(documents)), dtype=np.int32, count=sum(lengths))
    starts = list(accumulate(lengths, initial=0))
    offsets, first = [], 0
    for document in documents:
        offsets.append(starts[first:first + len(document) + 1])
        first += len(document)
    return tokens, offsets


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
        tokens, offsets = flatten(documents)
        cls_id, sep_id = special_id(tokenizer, self.name, "cls"), special_id(tokenizer, self.name, "sep")
        for a0, a1, b0, b1, label in self.spans(offsets, rng):
            first, second = tokens[a0:a1].tolist(), tokens[b0:b1].tolist()
            yield {"input_ids": [cls_id, *first, sep_id, *second, sep_id],
                   "token_type_ids": [0] * (len(first) + 2) + [1] * (len(second) + 1),
                   "next_sentence_label": label}

    def batches(self, shard: Shard, tokenizer, size: int) -> Iterator[pa.RecordBatch]:
        """The rows of `instances`, built with numpy from the spans, ``size`` rows a batch."""
        rng = random.Random(f"{self.seed}:{shard.index}")
        tokens, offsets = flatten(tokenize_documents(iter_documents(shard), tokenizer))
        specials = [special_id(tokenizer, self.name, "cls"), special_id(tokenizer, self.name, "sep")]
        extended = np.concatenate([tokens, np.array(specials, dtype=np.int32)])
        spans = self.spans(offsets, rng)
        while chunk := list(islice(spans, size)):
            yield pair_batch(np.array(chunk, dtype=np.int64).reshape(-1, 5), extended, self.schema)

    def spans(self, offsets: list[list[int]], rng: random.Random) -> Iterator[Span]:
        """The instances of the documents whose sentence offsets are ``offsets`` (`flatten`), as spans.

        Per document: draw the target length, gather sentences up to it, let ``make_pair`` split
        them into A and B (or drop them), put back the sentences it asks to, and truncate the pair.
        """
        budget = self.seq_length - 3
        for index, sentences in enumerate(offsets):
            count = len(sentences) - 1
            target = rng.randint(2, budget) if rng.random() < self.short_seq_prob else budget
            start = position = 0
            while position < count:
                position += 1
                if position < count and sentences[position] - sentences[start] < target:
                    continue
                pair = self.make_pair(sentences[start:position + 1], offsets, index, target, rng)
                start = position
                if pair is None:
                    continue
                (a0, a1), (b0, b1), label, put_back = pair
                position -= put_back
                start = position
                (a_front, a_back), (b_front, b_back) = truncation(a1 - a0, b1 - b0, budget, rng)
                yield a0 + a_front, a1 - a_back, b0 + b_front, b1 - b_back, label

    def make_pair(self, chunk: list[int], offsets: list[list[int]], index: int, target: int,
                  rng: random.Random) -> Pair | None:
        """Build (A, B, label, sentences put back) from a chunk of document ``index`` (the offsets of
        its consecutive sentences, `flatten`), or None."""
        raise NotImplementedError


Pair = tuple[tuple[int, int], tuple[int, int], int, int]
"""(A as (start, end), B as (start, end), label, number of sentences to put back)."""


def pair_batch(spans: np.ndarray, extended: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    """Rows ``[CLS] A [SEP] B [SEP]`` with their segment ids and labels for ``spans`` (N, 5)
    (`Span`), gathered from ``extended``: the flat tokens followed by the [CLS] and [SEP] ids."""
    cls_at, sep_at = len(extended) - 2, len(extended) - 1
    n = len(spans)
    one = np.ones(n, dtype=np.int64)
    starts = np.stack([cls_at * one, spans[:, 0], sep_at * one, spans[:, 2], sep_at * one], axis=1).ravel()
    lengths = np.stack([one, spans[:, 1] - spans[:, 0], one, spans[:, 3] - spans[:, 2], one], axis=1).ravel()
    ends = np.cumsum(lengths)
    index = np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1])
    row_offsets = np.zeros(n + 1, dtype=np.int32)
    row_offsets[1:] = ends[4::5]
    segments = np.repeat(np.tile(np.array([0, 0, 0, 1, 1], dtype=np.int32), n), lengths)
    columns = [pa.ListArray.from_arrays(pa.array(row_offsets), pa.array(values))
               for values in (extended[index], segments)]
    return pa.RecordBatch.from_arrays([*columns, pa.array(spans[:, 4], type=pa.int64())], schema=schema)


def split_chunk(chunk: list[int], rng: random.Random) -> tuple[tuple[int, int], tuple[int, int], int] | None:
    """Split consecutive sentences (their offsets) into A and B at a random sentence boundary (inside
    the sentence, at a random token, when there is one sentence). Returns (A, B, sentences in B) with
    A and B as (start, end), or None when the chunk is a single token."""
    if len(chunk) >= 3:
        cut = rng.randint(1, len(chunk) - 2)
        return (chunk[0], chunk[cut]), (chunk[cut], chunk[-1]), len(chunk) - 1 - cut
    start, end = chunk
    if end - start < 2:
        return None
    cut = start + rng.randint(1, end - start - 1)
    return (start, cut), (cut, end), 0


def truncation(first: int, second: int, budget: int, rng: random.Random) -> tuple[tuple[int, int], tuple[int, int]]:
    """How many tokens to remove from the front and the back of A and B (lengths ``first`` and
    ``second``) so that they fit ``budget``: one token at a time from the longer one (B on ties),
    from its front or back with equal probability (BERT's ``truncate_seq_pair``). The removals are
    counted, not done, so a very long sentence costs linear time."""
    lengths, cuts = [first, second], [[0, 0], [0, 0]]  # per side: [front, back] removals
    while lengths[0] + lengths[1] > budget:
        side = 0 if lengths[0] > lengths[1] else 1
        lengths[side] -= 1
        cuts[side][0 if rng.random() < 0.5 else 1] += 1
    return (cuts[0][0], cuts[0][1]), (cuts[1][0], cuts[1][1])


def truncate_pair(first: list[int], second: list[int], budget: int, rng: random.Random) -> None:
    """Shorten A and B in place until ``len(A) + len(B) <= budget`` (`truncation`)."""
    for tokens, (front, back) in zip((first, second), truncation(len(first), len(second), budget, rng)):
        del tokens[len(tokens) - back:]
        del tokens[:front]


@dataclass
class NspProcessor(SentencePairProcessor):
    """Processor ``bert``: pairs labelled for next sentence prediction (1 = B is random)."""

    def make_pair(self, chunk, offsets, index, target, rng) -> Pair | None:
        split = split_chunk(chunk, rng)
        if split is None:
            return None
        first, second, sentences = split
        if len(offsets) < 2 or rng.random() >= 0.5:
            return first, second, 0, 0
        other = rng.randrange(len(offsets) - 1)
        other += other >= index
        document = offsets[other]
        start = rng.randrange(len(document) - 1)
        need = target - (first[1] - first[0])
        end = start + 1
        while end < len(document) - 1 and document[end] - document[start] < need:
            end += 1
        return first, (document[start], document[end]), 1, sentences


@dataclass
class SopProcessor(SentencePairProcessor):
    """Processor ``albert``: pairs labelled for sentence order prediction (1 = A and B swapped)."""

    def make_pair(self, chunk, offsets, index, target, rng) -> Pair | None:
        split = split_chunk(chunk, rng)
        if split is None:
            return None
        first, second, _ = split
        if rng.random() < 0.5:
            return second, first, 1, 0
        return first, second, 0, 0
