"""Packed text blocks for T5 span corruption (processor ``t5``).

Raffel et al. 2020 (T5) pretrain on C4 text concatenated and cut into blocks; the noise is applied
later, in the collator (`uer.data.span_corruption`), anew at each draw. Here a shard's documents are
joined with the eos token (or [SEP] when the tokenizer has no eos) between them and cut into blocks
of ``raw_length(seq_length)`` tokens, so that a full block, once corrupted (sentinels and eos
added), is exactly ``seq_length`` tokens long, as Hugging Face's ``run_t5_mlm_flax.py`` computes
it; the last, shorter block of a shard is kept unless it has fewer than 2 tokens.

Sentinels come from the tokenizer: ``<extra_id_N>``, ``extraN`` or the ``sentinel_token`` format
(e.g. ``[unused{}]``). A tokenizer with none gets ``num_sentinels`` ``<extra_id_N>`` special tokens
(logged); that tokenizer is stored in the cache (`uer.preprocess.tokenizer_cache`) and is the one
saved with the dataset and with checkpoints, so the model's vocabulary size follows it.

Row column: ``input_ids`` (int32, plain text tokens).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import ClassVar, Iterator

import pyarrow as pa

from uer.data.span_lengths import raw_length
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.preprocess.full_sentences import joined
from uer.preprocess.processor import TOKEN_IDS, TextProcessor, pack, special_id
from uer.preprocess.tokenizer_cache import prepared_tokenizer

log = logging.getLogger(__name__)


@dataclass
class SpanCorruptionProcessor(TextProcessor):
    """Processor ``t5``. ``noise_density`` (0.15) and ``mean_noise_span_length`` (3) are T5's and
    decide the block length; ``sentinel_token`` is a format like ``"[unused{}]"`` (None: look for
    ``<extra_id_N>`` then ``extraN``); ``num_sentinels`` is how many to add when there is none."""

    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    sentinel_token: str | None = None
    num_sentinels: int = 100

    schema: ClassVar[pa.Schema] = pa.schema([("input_ids", TOKEN_IDS)])
    min_seq_length: ClassVar[int] = 8

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.noise_density < 1:
            raise UerError(f"data.noise_density: must be in (0, 1), got {self.noise_density!r}")
        if not self.mean_noise_span_length >= 1:
            raise UerError(f"data.mean_noise_span_length: must be >= 1, got {self.mean_noise_span_length!r}")
        if not isinstance(self.num_sentinels, int) or self.num_sentinels < 1:
            raise UerError(f"data.num_sentinels: must be an integer >= 1, got {self.num_sentinels!r}")
        self._spec = None

    def tokenizer_spec(self) -> str:
        """The configured tokenizer if it has sentinels, else the cached copy with sentinels added.

        Raises UerError when ``sentinel_token`` names tokens the tokenizer does not have."""
        if self._spec is None:
            base = super().tokenizer_spec()
            tokenizer = Tokenizer.load(base)
            if tokenizer.sentinel_ids(self.sentinel_token):
                self._spec = base
            elif self.sentinel_token:
                raise UerError(f"data.sentinel_token={self.sentinel_token}: tokenizer {base} has no "
                               f"{self.sentinel_token.format(0)!r} token")
            else:
                log.info("tokenizer %s has no sentinel tokens: adding %d <extra_id_N> tokens", base,
                         self.num_sentinels)
                recipe = {"base": tokenizer.fingerprint(), "sentinels": self.num_sentinels}
                tokenizer.add_sentinels(self.num_sentinels)
                self._spec = prepared_tokenizer(recipe, lambda: tokenizer)
        return self._spec

    def instances(self, documents, rng: random.Random, tokenizer) -> Iterator[dict]:
        eos_id = special_id(tokenizer, self.name, "eos", "sep")
        length = raw_length(self.seq_length, self.noise_density, self.mean_noise_span_length)[0]
        for block in pack(joined(documents, eos_id), length):
            if len(block) >= 2:
                yield {"input_ids": block}
