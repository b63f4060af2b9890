"""Dynamic masking for masked language modeling (Devlin et al. 2019; dynamic per draw as in
RoBERTa, Liu et al. 2019)."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.errors import UerError


def mask_tokens(ids: np.ndarray, maskable: np.ndarray, rngs: list[np.random.Generator], mask_prob: float,
                mask_id: int, replacement_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Choose round(mask_prob · n) of each row's n maskable positions (at least one) and corrupt
    them 80/10/10: [MASK] / a random token / unchanged.

    Args:
        ids: (B, S) int64 token ids (not modified).
        maskable: (B, S) bool, False for special tokens and padding, which are never chosen.
        rngs: one generator per row, so a row's masking does not depend on its batch neighbours.
        mask_prob: fraction of maskable positions to predict.
        mask_id: id of the mask token.
        replacement_ids: (K,) ids a "random token" is drawn from (the non-special vocabulary).

    Returns:
        ``(input_ids, labels)``, both (B, S) int64; labels are -100 except at chosen positions,
        where they hold the original id.
    """
    b, s = ids.shape
    keys = np.full((b, s), np.inf)
    actions = np.ones((b, s))
    randoms = np.zeros((b, s), dtype=np.int64)
    lengths = s - np.argmax(maskable[:, ::-1], axis=1)  # up to the last maskable position
    for i, rng in enumerate(rngs):  # draws depend on the row alone, not on the batch's padded width
        n = lengths[i] if maskable[i].any() else 0
        keys[i, :n], actions[i, :n] = rng.random(n), rng.random(n)
        randoms[i, :n] = rng.integers(0, len(replacement_ids), n)
    keys = np.where(maskable, keys, np.inf)
    n = maskable.sum(1)
    k = np.where(n > 0, np.maximum(1, np.rint(n * mask_prob)), 0).astype(np.int64)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    chosen = rank < k[:, None]
    labels = np.where(chosen, ids, -100)
    out = ids.copy()
    out[chosen & (actions < 0.8)] = mask_id
    swap = chosen & (actions >= 0.8) & (actions < 0.9)
    out[swap] = replacement_ids[randoms[swap]]
    return out, labels


class MlmCollator:
    """Pads token rows and masks them dynamically. Extra columns pass through: ``token_type_ids``
    is padded with 0, ``next_sentence_label`` becomes a (B,) tensor.

    ``__call__(rows: dict[str, list], rngs) -> batch`` with ``input_ids`` (B, S), ``labels`` (B, S),
    ``attention_mask`` (B, S) only when some row is padded, and the passed-through fields.

    Args:
        special_ids: ids never masked (cls, sep, pad, ...): the tokenizer's special tokens.
        pad_id, mask_id: the tokenizer's pad and mask ids.
        vocab_size: random replacements are drawn from [0, vocab_size) minus ``special_ids``.
        mask_prob: fraction of tokens to predict (0.15 in BERT).

    Raises:
        ValueError: ``mask_prob`` outside (0, 1), or no mask/pad token.
    """

    def __init__(self, special_ids: list[int], pad_id: int | None, mask_id: int | None, vocab_size: int,
                 mask_prob: float = 0.15):
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if mask_id is None or pad_id is None:
            raise ValueError("MLM needs a tokenizer with mask and pad tokens")
        self.special = np.array(sorted(set(special_ids)), dtype=np.int64)
        self.pad_id, self.mask_id, self.mask_prob = pad_id, mask_id, mask_prob
        self.replacement_ids = np.setdiff1d(np.arange(vocab_size), self.special)

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        ids, attention = pad(rows["input_ids"], self.pad_id)
        maskable = ~np.isin(ids, self.special)
        if attention is not None:
            maskable &= attention.astype(bool)
        input_ids, labels = mask_tokens(ids, maskable, rngs, self.mask_prob, self.mask_id, self.replacement_ids)
        batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels)}
        if attention is not None:
            batch["attention_mask"] = torch.from_numpy(attention)
        if "token_type_ids" in rows:
            batch["token_type_ids"] = torch.from_numpy(pad(rows["token_type_ids"], 0)[0])
        if "next_sentence_label" in rows:
            batch["next_sentence_label"] = torch.tensor(rows["next_sentence_label"], dtype=torch.int64)
        return batch


class MaskedLm(MlmCollator):
    """The collator of ``data=bert|albert|mlm``: `MlmCollator` with the special, pad and mask ids and
    the vocabulary size of ``tokenizer``.

    Args:
        tokenizer: a `uer.data.tokenizer.Tokenizer` with pad and mask tokens.
        mask_prob: ``data.mask_prob``, the fraction of tokens to predict (0.15 in BERT).

    Raises:
        UerError: ``mask_prob`` outside (0, 1), or a tokenizer without mask or pad token.
    """

    def __init__(self, tokenizer, mask_prob: float = 0.15):
        if not 0 < mask_prob < 1:
            raise UerError(f"data.mask_prob={mask_prob}: must be between 0 and 1")
        try:
            super().__init__(tokenizer.all_special_ids, tokenizer.pad_token_id, tokenizer.mask_token_id,
                             tokenizer.vocab_size, mask_prob)
        except ValueError as e:
            raise UerError(f"data.tokenizer: {e}") from None
