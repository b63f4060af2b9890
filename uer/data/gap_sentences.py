"""PEGASUS gap-sentence generation (Zhang et al. 2020, section 3.1), chosen each time a sample is drawn.

round(``gap_ratio`` · n) of a row's n sentences (at least one; 30% in PEGASUS) are selected by

- ``lead``: the first ones;
- ``random``: uniformly at random;
- ``principal``: the highest ROUGE-1 F1 against the rest of the row, each sentence scored on its
  own (PEGASUS's "Ind-Uniq": unigrams as sets); ties go to the earlier sentence.

Each selected sentence is replaced by one mask token in the encoder input; the target is the
selected sentences in their original order. Input: text [eos]; labels: gap sentences [eos].
"""
from __future__ import annotations

import numpy as np

from uer.data.infilling import split_sentences
from uer.data.seq2seq import Seq2SeqCollator

SELECTIONS = ("lead", "random", "principal")


def rouge1_f1(candidate: set[int], reference: set[int]) -> float:
    """ROUGE-1 F1 of two unigram sets (Lin 2004)."""
    overlap = len(candidate & reference)
    return 0.0 if overlap == 0 else 2 * overlap / (len(candidate) + len(reference))


def select_gap_sentences(sentences: list[list[int]], gap_ratio: float, selection: str,
                         rng: np.random.Generator) -> list[int]:
    """Sorted indices of the gap sentences (``selection`` in `SELECTIONS`; ValueError otherwise)."""
    n = len(sentences)
    count = min(n, max(1, round(gap_ratio * n)))
    if selection == "lead":
        return list(range(count))
    if selection == "random":
        return sorted(int(i) for i in rng.permutation(n)[:count])
    if selection == "principal":
        scores = [rouge1_f1(set(sentence), {t for j, other in enumerate(sentences) if j != i for t in other})
                  for i, sentence in enumerate(sentences)]
        return sorted(sorted(range(n), key=lambda i: (-scores[i], i))[:count])
    raise ValueError(f"unknown gap sentence selection {selection!r}; valid: {', '.join(SELECTIONS)}")


class GapSentencesCollator(Seq2SeqCollator):
    """Collator of processor ``gsg``: rows ``input_ids`` (sentences, no special tokens) and
    ``sentence_lengths`` -> gap-sentence encoder-decoder batches (fields in `uer.data.seq2seq`).

    Args:
        pad_id, mask_id, eos_id, decoder_start_id: special ids (PEGASUS starts with pad).
        gap_ratio, selection: fraction of sentences to select (0.3) and how (`SELECTIONS`).
    """

    def __init__(self, pad_id: int, mask_id: int, eos_id: int, decoder_start_id: int, gap_ratio: float = 0.3,
                 selection: str = "principal"):
        super().__init__(pad_id, pad_id, decoder_start_id)
        self.mask_id, self.eos_id, self.gap_ratio, self.selection = mask_id, eos_id, gap_ratio, selection

    def make_pair(self, row, rng):
        sentences = split_sentences(row["input_ids"], row["sentence_lengths"])
        gaps = set(select_gap_sentences(sentences, self.gap_ratio, self.selection, rng))
        source = [token for i, s in enumerate(sentences) for token in ([self.mask_id] if i in gaps else s)]
        target = [token for i in sorted(gaps) for token in sentences[i]]
        return [*source, self.eos_id], [*target, self.eos_id]
