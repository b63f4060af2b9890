"""Instruction-tuning conversations, answers-only labels, packed into blocks (processor ``llm_sft``).

The source (``data.corpus``, required) is a JSONL file, or a glob of several, of Alpaca or chat records
(:mod:`uer.data.sft`); every line is checked before any work starts, and a bad one stops the run
with one line naming the file and line number. Each conversation is rendered with the tokenizer's
chat template (or the default of :mod:`uer.data.chat`), tokenized, labelled on its assistant turns
and cut to ``seq_length`` tokens. With ``packing`` (the default) consecutive conversations share a
block of at most ``seq_length`` tokens as long as the next one fits whole (a greedy, order-keeping
packing); the collator (:class:`uer.data.packing.PackedLm`) keeps them from attending to each other.
Without it every conversation is its own row.

Row columns: ``input_ids``, ``labels`` (int32, -100 off the answers) and ``document_lengths``
(int32, the tokens of each conversation in the row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
from uer.preprocess.corpus import resolve_files
from uer.preprocess.processor import TOKEN_IDS, Plan, Processor

from uer.data.sft import encode_chat, record_messages
from uer.errors import UerError

RECORDS_PER_SHARD = 2000
"""Conversations per shard (a worker's unit of work)."""


@dataclass
class LlmSftProcessor(Processor):
    """Processor ``llm_sft``; ``packing`` puts several conversations in a block (see the module docstring)."""

    packing: bool = True

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("labels", TOKEN_IDS),
                                             ("document_lengths", TOKEN_IDS)])
    default_tokenizer: ClassVar[str | None] = "builtin:kjv-bpe"
    uncached_keys: ClassVar[tuple[str, ...]] = ("corpus", "tokenizer", "num_proc", "corpus_format", "invalid_utf8")

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.packing, bool):
            raise UerError(f"data.packing: must be true or false, got {self.packing!r}")

    def plan(self) -> Plan:
        if self.corpus is None:
            raise UerError("data.corpus: processor llm_sft needs a JSONL file of Alpaca or chat records")
        digest = hashlib.sha256()
        records = []
        for index, path in enumerate(resolve_files(self.corpus)):
            digest.update(f"\0file {index}\0".encode())
            records += read_records(path, digest)
        shards = [records[i:i + RECORDS_PER_SHARD] for i in range(0, len(records), RECORDS_PER_SHARD)]
        return Plan(digest.hexdigest(), {"records": len(records)}, shards)

    def generate(self, shard: list[tuple[str, list[dict]]], tokenizer) -> Iterator[dict]:
        examples = (_encoded(where, messages, tokenizer, self.seq_length) for where, messages in shard)
        for group in pack_examples(examples, self.seq_length if self.packing else 0):
            yield {"input_ids": [i for ids, _ in group for i in ids], "labels": [y for _, labels in group for y in labels],
                   "document_lengths": [len(ids) for ids, _ in group]}


def read_records(path: Path, digest) -> list[tuple[str, list[dict]]]:
    """``(where, messages)`` of every non-blank line of the JSONL file ``path`` (``where`` names the
    file and line), feeding the file's bytes to ``digest``.

    Raises:
        UerError: the file cannot be read, is not UTF-8, is empty or blank, or a line is not a valid
            record (:func:`uer.data.sft.record_messages`).
    """
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UerError(f"corpus {path}: not a UTF-8 text file") from None
    except OSError as err:
        raise UerError(f"corpus {path}: cannot read ({err.strerror or err})") from None
    digest.update(raw)
    records = [(f"corpus {path}: line {n}", record_messages(line, f"corpus {path}: line {n}"))
               for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not records:
        raise UerError(f"corpus {path}: {'file is empty' if not raw else 'no records (only blank lines)'}")
    return records


def _encoded(where: str, messages: list[dict], tokenizer, seq_length: int) -> tuple[list[int], list[int]]:
    """``encode_chat`` cut to ``seq_length`` tokens; a template error names ``where``."""
    try:
        ids, labels = encode_chat(messages, tokenizer)
    except UerError as err:
        raise UerError(f"{where}: {err}") from None
    return ids[:seq_length], labels[:seq_length]


def pack_examples(examples: Iterable[tuple[list[int], list[int]]], size: int) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Group consecutive ``(ids, labels)`` examples (each at most ``size`` tokens) greedily: a group
    takes the next example while the total stays within ``size``. ``size`` 0: one example per group."""
    group: list[tuple[list[int], list[int]]] = []
    used = 0
    for example in examples:
        if group and (size == 0 or used + len(example[0]) > size):
            yield group
            group, used = [], 0
        group.append(example)
        used += len(example[0])
    if group:
        yield group
