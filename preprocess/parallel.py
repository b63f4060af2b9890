"""Parallel text for machine translation (processor ``mt``): ``source<TAB>target`` lines.

Every non-blank line must hold exactly one tab with text on both sides (the format of the
news-commentary sample in ``../shared/data``). Other lines fail the run naming the file and line
(``invalid_pairs=fail``) or are dropped and counted in the dataset's statistics (``skip``), as
``invalid_utf8`` treats undecodable lines. Blank lines are ignored.

The source side is tokenized with ``tokenizer``, the target side with ``tgt_tokenizer``. A null one
is trained on its side of the corpus: a cased WordPiece vocabulary of ``vocab_size`` entries
(`Tokenizer.train`, deterministic). A ``tokenizer`` that already has a target side (a checkpoint's
or a dataset's ``tokenizer/`` directory) is used whole when ``tgt_tokenizer`` is null. Both travel
as one `Tokenizer` whose ``target`` is the target side (saved in ``tgt_tokenizer/``, in the dataset
and in checkpoints), stored in the cache by `uer.preprocess.tokenizer_cache`.

Row columns: ``input_ids`` = source tokens + eos (at most ``seq_length``) and ``labels`` = target
tokens + the target eos (at most ``tgt_seq_length``), int32; eos falls back to [SEP].
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.preprocess.corpus import Shard, iter_documents, open_corpus
from uer.preprocess.processor import ENCODE_BATCH, TOKEN_IDS, Plan, TextProcessor, memo_encoder, special_id
from uer.preprocess.tokenizer_cache import prepared_tokenizer

POLICIES = ("fail", "skip")
log = logging.getLogger(__name__)


def split_pair(line: str) -> tuple[str, str] | None:
    """``(source, target)`` of a ``source<TAB>target`` line (sides stripped), or None when the line
    has not exactly one tab or a side is blank."""
    parts = line.split("\t")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return parts[0].strip(), parts[1].strip()


def scan_pairs(files: list[Path], policy: str) -> int:
    """Check every non-blank line of ``files`` with `split_pair`; returns the number of invalid lines.

    Raises UerError for an unknown policy, or with ``policy="fail"`` at the first invalid line,
    naming the file and the 1-based line number. Lines that are not UTF-8 are left to ``invalid_utf8``.
    """
    if policy not in POLICIES:
        raise UerError(f"data.invalid_pairs: unknown value {policy!r}; valid: {', '.join(POLICIES)}")
    invalid = 0
    for path in files:
        with open(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8").lstrip("\ufeff").strip("\r\n")
                except UnicodeDecodeError:
                    continue
                if not line.strip() or split_pair(line) is not None:
                    continue
                if policy == "fail":
                    raise UerError(f"corpus {path}: line {lineno} is not 'source<TAB>target'; "
                                   "set data.invalid_pairs=skip to drop such lines")
                invalid += 1
    return invalid


def iter_pairs(shard: Shard) -> Iterator[tuple[str, str]]:
    """The valid ``(source, target)`` pairs of one shard, in order."""
    for document in iter_documents(shard):
        for line in document:
            if (pair := split_pair(line)) is not None:
                yield pair


@dataclass
class PairsProcessor(TextProcessor):
    """A text processor whose lines are ``source<TAB>target`` pairs; ``invalid_pairs`` is fail|skip."""

    invalid_pairs: str = "fail"

    def plan(self) -> Plan:
        corpus = open_corpus(self.corpus, self.corpus_format, self.invalid_utf8)
        skipped = scan_pairs(corpus.files, self.invalid_pairs)
        if skipped:
            log.warning("skipped %d lines that are not 'source<TAB>target'", skipped)
        return Plan(corpus.digest, {**corpus.stats, "skipped_invalid_pairs": skipped}, corpus.shards)


def encode_pairs(pairs: list[tuple[str, str]], source_tokenizer, target_tokenizer) -> Iterator[tuple[list, list]]:
    """Token ids of each pair's sides, tokenized in batches of `ENCODE_BATCH`."""
    for start in range(0, len(pairs), ENCODE_BATCH):
        chunk = pairs[start:start + ENCODE_BATCH]
        yield from zip(memo_encoder(source_tokenizer).encode_batch([p[0] for p in chunk]),
                       memo_encoder(target_tokenizer).encode_batch([p[1] for p in chunk]))


@dataclass
class ParallelProcessor(PairsProcessor):
    """Processor ``mt``: ``tgt_tokenizer`` and ``tgt_seq_length`` describe the target side;
    ``vocab_size`` is the size of a vocabulary trained for a null ``tokenizer`` or ``tgt_tokenizer``."""

    tgt_tokenizer: str | None = None
    vocab_size: int = 8000
    tgt_seq_length: int = 128

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS), ("labels", TOKEN_IDS)])
    default_tokenizer: ClassVar[str | None] = None
    uncached_keys: ClassVar[tuple[str, ...]] = (*TextProcessor.uncached_keys, "tgt_tokenizer", "vocab_size")

    def __post_init__(self):
        super().__post_init__()
        if self.corpus is None:
            raise UerError("data.corpus: processor mt needs a parallel corpus of source<TAB>target lines "
                           "(the default corpus is not parallel)")
        if not isinstance(self.tgt_seq_length, int) or self.tgt_seq_length < 2:
            raise UerError(f"data.tgt_seq_length: must be an integer >= 2, got {self.tgt_seq_length!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 10:
            raise UerError(f"data.vocab_size: must be an integer >= 10, got {self.vocab_size!r}")
        self._spec = None

    def tokenizer_spec(self) -> str:
        """The configured ``tokenizer`` when it already has a target side (a checkpoint's) and
        ``tgt_tokenizer`` is null; else a cached directory: the source tokenizer with the target one as
        its ``target``, each loaded or trained on its side of the corpus."""
        if self._spec is None:
            source = Tokenizer.load(self.tokenizer) if self.tokenizer else None
            if source is not None and source.target is not None and not self.tgt_tokenizer:
                self._spec = self.tokenizer
                return self._spec
            target = Tokenizer.load(self.tgt_tokenizer) if self.tgt_tokenizer else None
            corpus = open_corpus(self.corpus, self.corpus_format, self.invalid_utf8)
            trained = {"trained_on": corpus.digest, "kind": "wordpiece", "vocab_size": self.vocab_size}
            recipe = {side: tokenizer.fingerprint() if tokenizer else trained
                      for side, tokenizer in (("source", source), ("target", target))}

            def build():
                result = source or self.train_side(corpus.shards, 0)
                result.target = target or self.train_side(corpus.shards, 1)
                return result

            self._spec = prepared_tokenizer(recipe, build)
        return self._spec

    def train_side(self, shards: list[Shard], side: int):
        """A cased WordPiece tokenizer (Chinese characters split) of ``vocab_size`` entries trained on
        side ``side`` (0 source, 1 target) of the pairs."""
        log.info("training a %d-entry %s tokenizer on %s", self.vocab_size, ("source", "target")[side], self.corpus)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "side.txt"
            with open(path, "w", encoding="utf-8") as out:
                for shard in shards:
                    out.writelines(pair[side] + "\n" for pair in iter_pairs(shard))
            return Tokenizer.train([path], kind="wordpiece", vocab_size=self.vocab_size, lowercase=False)

    def generate(self, shard: Shard, tokenizer) -> Iterator[dict]:
        if tokenizer.target is None:
            raise UerError(f"tokenizer {self.tokenizer}: processor mt needs a target tokenizer")
        eos_id = special_id(tokenizer, self.name, "eos", "sep")
        tgt_eos_id = special_id(tokenizer.target, self.name, "eos", "sep")
        for source, target in encode_pairs(list(iter_pairs(shard)), tokenizer, tokenizer.target):
            yield {"input_ids": [*source[:self.seq_length - 1], eos_id],
                   "labels": [*target[:self.tgt_seq_length - 1], tgt_eos_id]}

