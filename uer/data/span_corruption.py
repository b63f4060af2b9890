"""T5 span corruption (Raffel et al. 2020, section 3.1.4), drawn anew each time a sample is drawn.

A row of plain text tokens is split into alternating non-noise and noise spans (noise density 0.15,
mean noise span length 3 in T5), exactly as ``random_spans_noise_mask`` of the T5 reference and of
Hugging Face's ``run_t5_mlm_flax.py``: the numbers of noise tokens and spans are fixed by the length,
their segmentation is random, and the row always starts with non-noise. The encoder input keeps the
non-noise tokens and replaces noise span k by sentinel k; the target lists sentinel k followed by
the tokens of noise span k, for every span; both end with eos.
"""
from __future__ import annotations

import numpy as np

from uer.data.seq2seq import Seq2SeqCollator
from uer.data.span_lengths import noise_counts, raw_length

__all__ = ["SpanCorruptionCollator", "noise_counts", "random_spans_noise_mask", "raw_length", "span_corrupt"]


def _segment(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Random lengths (num_segments,), each >= 1, summing to ``num_items``."""
    first = np.zeros(num_items, dtype=bool)
    first[1 + rng.permutation(num_items - 1)[:num_segments - 1]] = True
    return np.bincount(np.cumsum(first), minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """(length,) bool, True on noise tokens: `noise_counts` tokens in that many spans, interleaved
    with as many non-noise spans, non-noise first. Raises ValueError for ``length < 2``."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    noise = _segment(num_noise, num_spans, rng)
    keep = _segment(length - num_noise, num_spans, rng)
    is_noise = np.repeat(np.tile([False, True], num_spans), np.stack([keep, noise], axis=1).reshape(-1))
    return is_noise


def _replace_spans(ids: np.ndarray, mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """``ids`` with each run of True in ``mask`` replaced by the next sentinel."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    filled = np.where(starts, sentinels[np.maximum(np.cumsum(starts) - 1, 0)], ids)
    return filled[~mask | starts]


def span_corrupt(ids: list[int], rng: np.random.Generator, sentinels: np.ndarray, eos_id: int,
                 noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tuple[list[int], list[int]]:
    """Corrupt one row: returns ``(input ids, target ids)``, each ending with ``eos_id``.

    ``sentinels``: (K,) ids in sentinel order, K >= the number of noise spans.
    """
    tokens = np.asarray(ids, dtype=np.int64)
    mask = random_spans_noise_mask(len(tokens), noise_density, mean_noise_span_length, rng)
    return ([*_replace_spans(tokens, mask, sentinels).tolist(), eos_id],
            [*_replace_spans(tokens, ~mask, sentinels).tolist(), eos_id])


class SpanCorruptionCollator(Seq2SeqCollator):
    """Collator of processor ``t5``: rows ``input_ids`` (plain tokens, >= 2 each) -> span-corrupted
    encoder-decoder batches (fields in `uer.data.seq2seq`).

    Args:
        sentinel_ids: the tokenizer's sentinel ids in sentinel order.
        pad_id, eos_id, decoder_start_id: special ids (T5 starts the decoder with pad).
        noise_density, mean_noise_span_length: T5's 0.15 and 3.
    """

    def __init__(self, sentinel_ids: list[int], pad_id: int, eos_id: int, decoder_start_id: int,
                 noise_density: float = 0.15, mean_noise_span_length: float = 3.0):
        super().__init__(pad_id, pad_id, decoder_start_id)
        self.sentinels = np.asarray(sentinel_ids, dtype=np.int64)
        self.eos_id, self.noise_density, self.mean_noise_span_length = eos_id, noise_density, mean_noise_span_length

    def make_pair(self, row, rng):
        return span_corrupt(row["input_ids"], rng, self.sentinels, self.eos_id, self.noise_density,
                            self.mean_noise_span_length)
