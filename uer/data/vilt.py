"""ViLT pretraining batches (Kim et al. 2021, §3.2): image–text pairs with image–text matching (ITM)
negatives and masked-language-model masking of the captions."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.image_text import ImageTextCollator
from uer.data.loader import Collate
from uer.data.masking import MaskedLm


def itm_partners(rows: dict[str, list], rngs: list[np.random.Generator], itm_prob: float) -> np.ndarray:
    """For each row, the row whose image it gets: itself (a matched pair) or, with probability
    ``itm_prob``, another row of the batch (a negative, ViLT's replaced image).

    Each row draws two numbers from its own generator (whether it is a negative, which partner),
    always both, so its later draws (masking) do not depend on the outcome. When the rows carry a
    ``label`` (the digits' class; -1 = none), a partner has another label, so a negative never
    shows the caption's own class; a row with no possible partner stays matched.

    Args:
        rows: columns of the batch (B rows); ``label`` is optional.
        rngs: one generator per row.
        itm_prob: probability of a negative, in [0, 1].

    Returns:
        (B,) int64 row indices; ``partners[i] != i`` marks a negative.
    """
    b = len(rngs)
    labels = np.asarray(rows["label"]) if "label" in rows else np.full(b, -1)
    partners = np.arange(b)
    for i, rng in enumerate(rngs):
        negative, pick = rng.random() < itm_prob, rng.random()
        candidates = np.flatnonzero((labels != labels[i]) | ((labels < 0) & (np.arange(b) != i)))
        if negative and len(candidates):
            partners[i] = candidates[int(pick * len(candidates))]
    return partners


class ItmMlmCollator:
    """Wraps an image–text pair collator: swaps images for ITM negatives before it runs, then masks
    the caption tokens it returns for MLM.

    ``__call__(rows: {"image": list[bytes], "input_ids": list[list[int]], ...}, rngs) -> batch`` with
    the pair collator's fields (``pixel_values`` (B, C, H, W), ``input_ids`` (B, S) now masked,
    ``attention_mask`` (B, S) when padded, ...) plus ``labels`` (B, S) MLM targets (-100 = not
    predicted) and ``itm_labels`` (B,) int64, 1 = matched, 0 = negative. Both objectives share one
    forward, so ITM sees the masked captions; MLM is predicted on the matched pairs only (a
    negative's labels are all -100), because ViLT's MLM conditions on the true image (its MLM pass
    runs on the original pairs, its ITM pass on the swapped ones): a masked word predicted beside the
    wrong image would teach the model to ignore the image, which is what ITM needs.

    Every random choice comes from the rows' own generators (the negative and its partner first,
    then the mask), as in `uer.data.masking`; which image a negative gets depends on the other rows
    of the batch (in-batch negatives).

    Args:
        pairs: the image–text pair collator, ``pairs(rows, rngs) -> batch`` (`uer.data.loader.Collate`).
        masking: the MLM settings (special, pad and mask ids, replacement vocabulary, mask_prob).
        itm_prob: fraction of pairs made negative (0.5 in ViLT).

    Raises:
        ValueError: ``itm_prob`` outside [0, 1].
    """

    def __init__(self, pairs: Collate, masking: MaskedLm, itm_prob: float = 0.5):
        if not 0 <= itm_prob <= 1:
            raise ValueError(f"itm_prob must be in [0, 1], got {itm_prob}")
        self.pairs, self.masking, self.itm_prob = pairs, masking, itm_prob

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        partners = itm_partners(rows, rngs, self.itm_prob)
        batch = self.pairs({**rows, "image": [rows["image"][j] for j in partners]}, rngs)
        attention = batch["attention_mask"].numpy() if "attention_mask" in batch else None
        input_ids, labels = self.masking.mask(batch["input_ids"].numpy(), attention, rngs)
        matched = partners == np.arange(len(partners))
        labels[~matched] = -100  # MLM on the true pairs only (the masks were drawn all the same)
        return {**batch, "input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                "itm_labels": torch.from_numpy(matched.astype(np.int64))}


class ViltCollator(ItmMlmCollator):
    """The collator of ``data=vilt``: :class:`ItmMlmCollator` around
    :class:`uer.data.image_text.ImageTextCollator` (``pixel_values`` as the Hugging Face image
    processor ``image_processor`` makes them, padded captions) with the MLM settings of ``tokenizer``.
    Its class ``labels`` (the digits) are replaced by the MLM labels.

    Args:
        tokenizer: a `uer.data.tokenizer.Tokenizer` with pad and mask tokens.
        image_size: the side of the model's square input images (``data.image_size``).
        mask_prob: ``data.mask_prob``, the fraction of caption tokens to predict.
        itm_prob: ``data.itm_prob``, the fraction of pairs made negative.
        whole_word: ``data.whole_word``, mask whole words (ViLT's whole-word masking, §3.2: a
            word's last piece alone would be guessed from its first, not from the image).
        image_processor: ``data.image_processor``, ``vilt`` (``ViltImageProcessor``'s pixels, what
            ``data=vilt`` sets) or ``clip`` (the default: runs whose config predates the key).

    Raises:
        UerError: ``mask_prob`` outside (0, 1), or a tokenizer without mask or pad token.
        ValueError: ``itm_prob`` outside [0, 1], or an unknown ``image_processor``.
    """

    def __init__(self, tokenizer, image_size: int, mask_prob: float = 0.15, itm_prob: float = 0.5,
                 image_processor: str = "clip", whole_word: bool = False):
        super().__init__(ImageTextCollator(tokenizer, image_size, image_processor),
                         MaskedLm(tokenizer, mask_prob, whole_word), itm_prob)
