"""BART denoising (Lewis et al. 2020, section 2.2): sentence permutation, then text infilling, drawn
anew each time a sample is drawn; the decoder reconstructs the original text.

- Sentence permutation: a fraction ``permute_sentences`` of the row's sentences (1.0 in BART) trade
  places in random order, as fairseq's ``DenoisingDataset.permute_sentences``.
- Text infilling: ceil(``mask_ratio`` · n) of the n tokens (30% in BART) are covered by spans whose
  lengths are drawn from Poisson(``poisson_lambda``) (λ = 3) until they add up (the last one cut to
  fit). Each span, zero-length ones included, becomes ONE mask token; zero-length spans thus insert
  a mask (never more masks than masked tokens, so the text does not grow). Spans never overlap, so
  the number of masks equals the number of spans. Unlike fairseq, spans cover tokens, not whole words.

Encoder input: [bos] noised text [eos]; labels: [bos] original text [eos].
"""
from __future__ import annotations

import math

import numpy as np

from uer.data.seq2seq import Seq2SeqCollator


def split_sentences(ids: list[int], sentence_lengths: list[int]) -> list[list[int]]:
    """``ids`` cut into consecutive sentences of the given lengths (they must sum to ``len(ids)``)."""
    ends = np.cumsum(sentence_lengths)
    return [list(ids[end - length:end]) for end, length in zip(ends, sentence_lengths)]


def permute_sentences(sentences: list[list[int]], ratio: float, rng: np.random.Generator) -> list[list[int]]:
    """A new list where round(ratio · n) randomly chosen sentences are shuffled among their places."""
    n = len(sentences)
    chosen = rng.permutation(n)[:round(n * ratio)]
    order = np.arange(n)
    order[chosen] = chosen[rng.permutation(len(chosen))]
    return [sentences[i] for i in order]


def infill_spans(length: int, mask_ratio: float, poisson_lambda: float,
                 rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random non-overlapping spans ``(start, span length)`` over ``length`` tokens, in order of start.

    Span lengths are Poisson(``poisson_lambda``) draws (the last one cut so they sum to
    ceil(mask_ratio · length)); zero-length draws are dropped, last first, while there are more
    spans than masked tokens, so the infilled text is never longer than the original. The spans
    are scattered uniformly among the unmasked tokens.
    """
    to_mask = math.ceil(length * mask_ratio)
    lengths = []
    while sum(lengths) < to_mask:
        lengths.append(min(int(rng.poisson(poisson_lambda)), to_mask - sum(lengths)))
    while len(lengths) > to_mask:  # more masks than masked tokens: drop zero-length spans, last first
        del lengths[len(lengths) - 1 - lengths[::-1].index(0)]
    kept = np.sort(rng.integers(0, length - to_mask + 1, size=len(lengths)))  # unmasked tokens before each span
    starts = kept + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return [(int(start), span) for start, span in zip(starts, lengths)]


def infill(ids: list[int], spans: list[tuple[int, int]], mask_id: int) -> list[int]:
    """``ids`` with every span ``(start, length)`` (non-overlapping, sorted) replaced by one ``mask_id``."""
    out, position = [], 0
    for start, length in spans:
        out.extend(ids[position:start])
        out.append(mask_id)
        position = start + length
    out.extend(ids[position:])
    return out


class InfillingCollator(Seq2SeqCollator):
    """Collator of processor ``bart``: rows ``input_ids`` (sentences, no special tokens) and
    ``sentence_lengths`` -> denoising encoder-decoder batches (fields in `uer.data.seq2seq`).

    Args:
        pad_id, mask_id, bos_id, eos_id, decoder_start_id: special ids (BART starts with eos).
        mask_ratio, poisson_lambda, permute_ratio: BART's 0.3, 3 and 1.0.
    """

    def __init__(self, pad_id: int, mask_id: int, bos_id: int, eos_id: int, decoder_start_id: int,
                 mask_ratio: float = 0.3, poisson_lambda: float = 3.0, permute_ratio: float = 1.0):
        super().__init__(pad_id, pad_id, decoder_start_id)
        self.mask_id, self.bos_id, self.eos_id = mask_id, bos_id, eos_id
        self.mask_ratio, self.poisson_lambda, self.permute_ratio = mask_ratio, poisson_lambda, permute_ratio

    def make_pair(self, row, rng):
        sentences = permute_sentences(split_sentences(row["input_ids"], row["sentence_lengths"]),
                                      self.permute_ratio, rng)
        text = [token for sentence in sentences for token in sentence]
        noised = infill(text, infill_spans(len(text), self.mask_ratio, self.poisson_lambda, rng), self.mask_id)
        return [self.bos_id, *noised, self.eos_id], [self.bos_id, *row["input_ids"], self.eos_id]
