"""The processor interface: options common to every processor, and the text pipeline they share.

A processor is a dataclass of its options (the ``data.*`` config keys it reads) with three jobs:
``plan()`` validates the source and cuts it into shards, ``generate(shard, tokenizer)`` turns one
shard into rows, and ``schema`` names the row columns and their Arrow types. ``uer.preprocess.build``
runs ``generate`` over the shards in worker processes; every shard draws from its own
``random.Random(f"{seed}:{shard.index}")``, so the output depends on the seed and the shards, not on
the number of processes.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import pyarrow as pa

from uer.errors import UerError
from uer.preprocess.corpus import Shard, iter_documents, open_corpus
from uer.preprocess.word_memo import MemoEncoder

TOKEN_IDS = pa.list_(pa.int32())
"""Arrow type of a token-id column: one list of int32 per row."""
ENCODE_BATCH = 4096
"""Sentences per ``Tokenizer.encode_batch`` call."""


@dataclass
class Plan:
    """What ``Processor.plan`` found: a content digest of the source, statistics, and the shards."""

    digest: str
    stats: dict
    shards: list[Any]
    label_names: list[str] | None = None


@dataclass
class Processor:
    """Options common to every processor (config keys ``data.<name>``).

    ``corpus`` is a path/glob (None = the embedded
    default); ``tokenizer`` a tokenizer spec (None = ``default_tokenizer``); ``seq_length`` the
    instance length in tokens; ``corpus_format`` auto|lines|documents; ``invalid_utf8`` fail|skip;
    ``seed`` seeds every shard's generator; ``num_proc`` is the number of worker processes.
    """

    corpus: str | None = None
    tokenizer: str | None = None
    seq_length: int = 128
    corpus_format: str = "auto"
    invalid_utf8: str = "fail"
    seed: int = 0
    num_proc: int = 2

    schema: ClassVar[pa.Schema]
    default_tokenizer: ClassVar[str | None] = None
    min_seq_length: ClassVar[int] = 2
    uncached_keys: ClassVar[tuple[str, ...]] = ("corpus", "tokenizer", "num_proc")
    """Options left out of the cache key: the corpus and tokenizer enter it by content instead."""

    def __post_init__(self):
        if not isinstance(self.seq_length, int) or self.seq_length < self.min_seq_length:
            raise UerError(f"data.seq_length: must be an integer >= {self.min_seq_length} for processor "
                           f"{self.name}, got {self.seq_length!r}")
        if not isinstance(self.num_proc, int) or self.num_proc < 1:
            raise UerError(f"data.num_proc: must be an integer >= 1, got {self.num_proc!r}")

    @property
    def name(self) -> str:
        """The processor's class name, for messages."""
        return type(self).__qualname__

    @property
    def target(self) -> str:
        """The dotted path of the processor's class, as ``data.processor._target_`` names it."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def cache_options(self) -> dict:
        """The processor class and the options that decide the output, as a JSON-able dict (part of
        the cache key)."""
        options = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.uncached_keys}
        return {"processor": self.target, **options}

    def tokenizer_spec(self) -> str | None:
        """The tokenizer to load: ``tokenizer`` or the processor's default (None: needs none)."""
        return self.tokenizer or self.default_tokenizer

    def plan(self) -> Plan:
        """Validate the source and cut it into shards. Raises UerError on bad input."""
        raise NotImplementedError

    def generate(self, shard: Any, tokenizer) -> Iterator[dict]:
        """Yield the rows of one shard as dicts with exactly the columns of ``schema``."""
        raise NotImplementedError

    def batches(self, shard: Any, tokenizer, size: int) -> Iterator[pa.RecordBatch]:
        """The rows of `generate` as Arrow record batches of ``schema``, ``size`` rows each (the last
        may be shorter). A processor may build them directly, faster, with the same rows."""
        for rows in pack(self.generate(shard, tokenizer), size):
            yield record_batch(rows, self.schema)


@dataclass
class TextProcessor(Processor):
    """A processor over a text corpus: it reads a shard's documents, tokenizes every line with
    ``tokenizer.encode_batch`` (no special tokens added) and hands the token documents to
    ``instances``."""

    default_tokenizer: ClassVar[str | None] = "builtin:kjv-wordpiece"

    def plan(self) -> Plan:
        corpus = open_corpus(self.corpus, self.corpus_format, self.invalid_utf8)
        return Plan(corpus.digest, corpus.stats, corpus.shards)

    def generate(self, shard: Shard, tokenizer) -> Iterator[dict]:
        rng = random.Random(f"{self.seed}:{shard.index}")
        return self.instances(tokenize_documents(iter_documents(shard), tokenizer), rng, tokenizer)

    def instances(self, documents: list[list[list[int]]], rng: random.Random, tokenizer) -> Iterator[dict]:
        """Turn a shard's documents (lists of sentences, each a non-empty list of token ids) into rows."""
        raise NotImplementedError


def tokenize_documents(documents: Iterable[list[str]], tokenizer) -> list[list[list[int]]]:
    """Tokenize every line of every document (through :func:`memo_encoder`: the ids of
    ``tokenizer.encode_batch``); empty lines and documents are dropped.

    Returns ``documents[d][s]`` = token ids (a list of int) of sentence ``s`` of document ``d``.
    """
    documents = list(documents)
    lines = list(chain.from_iterable(documents))
    encoder = memo_encoder(tokenizer)
    ids: list[list[int]] = []
    for start in range(0, len(lines), ENCODE_BATCH):
        ids.extend(encoder.encode_batch(lines[start:start + ENCODE_BATCH]))
    result, position = [], 0
    for document in documents:
        sentences = [s for s in ids[position:position + len(document)] if s]
        position += len(document)
        if sentences:
            result.append(sentences)
    return result


@functools.lru_cache(maxsize=4)
def memo_encoder(tokenizer) -> MemoEncoder:
    """One :class:`MemoEncoder` per tokenizer and process, so the word memo carries over shards."""
    return MemoEncoder(tokenizer)


def special_id(tokenizer, processor: str, *roles: str) -> int:
    """The id of the first role in ``roles`` (e.g. "cls", "bos") the tokenizer defines.

    Raises UerError naming the processor and the roles when it defines none of them.
    """
    for role in roles:
        value = getattr(tokenizer, f"{role}_token_id", None)
        if value is not None:
            return value
    raise UerError(f"tokenizer: processor {processor} needs a {' or '.join(roles)} token, and this "
                   "tokenizer defines none")


def record_batch(rows: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    """The rows as one Arrow record batch of ``schema``, equal to ``RecordBatch.from_pylist``.

    A list-of-integers column (token ids) is built from one flat numpy array and its offsets, about
    6x faster than ``from_pylist``'s per-value conversion; other columns go through ``pa.array``.
    """
    arrays = []
    for field in schema:
        column = [row[field.name] for row in rows]
        kind = field.type
        if pa.types.is_list(kind) and pa.types.is_integer(kind.value_type):
            offsets = np.zeros(len(column) + 1, dtype=np.int32)
            np.cumsum(np.fromiter(map(len, column), dtype=np.int64, count=len(column)), out=offsets[1:])
            values = np.fromiter(chain.from_iterable(column), dtype=kind.value_type.to_pandas_dtype(),
                                 count=int(offsets[-1]))
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)).cast(kind))
        else:
            arrays.append(pa.array(column, type=kind))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def pack(tokens: Iterable[int], size: int) -> Iterator[list[int]]:
    """Cut a token stream into consecutive blocks of ``size`` tokens; the last may be shorter."""
    stream = iter(tokens)
    while block := list(islice(stream, size)):
        yield block
