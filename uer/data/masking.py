"""Dynamic masking for masked language modeling (Devlin et al. 2019; dynamic per draw as in
RoBERTa, Liu et al. 2019)."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.errors import UerError


def mask_tokens(ids: np.ndarray, maskable: np.ndarray, rngs: list[np.random.Generator], mask_prob: float,
                mask_id: int, replacement_ids: np.ndarray, word_starts: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Choose round(mask_prob · n) of each row's n maskable positions (at least one) and corrupt
    them 80/10/10: [MASK] / a random token / unchanged.

    With ``word_starts``, whole words are chosen (whole-word masking, as Google's BERT
    ``--do_whole_word_mask`` and Chinese BERT-wwm, Cui et al. 2019): n counts the words, a chosen
    word has all its tokens predicted, and each token still gets its own 80/10/10 action. The
    random draws are the same with or without it.

    Args:
        ids: (B, S) int64 token ids (not modified).
        maskable: (B, S) bool, False for special tokens and padding, which are never chosen.
        rngs: one generator per row, so a row's masking does not depend on its batch neighbours.
        mask_prob: fraction of maskable positions to predict.
        mask_id: id of the mask token.
        replacement_ids: (K,) ids a "random token" is drawn from (the non-special vocabulary).
        word_starts: (B, S) bool, True where a token begins a word (a WordPiece token without
            ``##``); a maskable token after a non-maskable one always begins a word. None = every
            token is its own unit.

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
    starts = maskable  # the units drawn: tokens, or the first token of each word
    if word_starts is not None:
        after_maskable = np.concatenate([np.zeros((b, 1), dtype=bool), maskable[:, :-1]], axis=1)
        starts = maskable & (word_starts | ~after_maskable)
    keys = np.where(starts, keys, np.inf)
    n = starts.sum(1)
    k = np.where(n > 0, np.maximum(1, np.rint(n * mask_prob)), 0).astype(np.int64)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    unit = np.maximum.accumulate(np.where(starts, np.arange(s), 0), axis=1)  # the start of each token's word
    chosen = maskable & np.take_along_axis(rank < k[:, None], unit, axis=1)
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
    ``masked_positions`` (N,) int64 (the flat row-major indices of the N predicted entries of
    ``labels``, which `uer.targets.mlm.MlmTarget` gathers without a data-dependent shape),
    ``attention_mask`` (B, S) only when some row is padded, and the passed-through fields.

    Args:
        special_ids: ids never masked (cls, sep, pad, ...): the tokenizer's special tokens.
        pad_id, mask_id: the tokenizer's pad and mask ids.
        vocab_size: random replacements are drawn from [0, vocab_size) minus ``special_ids``.
        mask_prob: fraction of tokens (or words) to predict (0.15 in BERT).
        continuation: (vocab_size,) bool, True for ids that continue a word (WordPiece ``##``
            pieces): whole-word masking (see :func:`mask_tokens`); None = token masking.

    Raises:
        ValueError: ``mask_prob`` outside (0, 1), or no mask/pad token.
    """

    def __init__(self, special_ids: list[int], pad_id: int | None, mask_id: int | None, vocab_size: int,
                 mask_prob: float = 0.15, continuation: np.ndarray | None = None):
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if mask_id is None or pad_id is None:
            raise ValueError("MLM needs a tokenizer with mask and pad tokens")
        self.special = np.array(sorted(set(special_ids)), dtype=np.int64)
        self.pad_id, self.mask_id, self.mask_prob = pad_id, mask_id, mask_prob
        self.replacement_ids = np.setdiff1d(np.arange(vocab_size), self.special)
        self.continuation = continuation

    def mask(self, ids: np.ndarray, attention: np.ndarray | None, rngs: list[np.random.Generator]
             ) -> tuple[np.ndarray, np.ndarray]:
        """(B, S) padded ids and their attention mask (None = nothing padded) -> ``(input_ids,
        labels)`` by :func:`mask_tokens` with these settings; special tokens and padding are never
        chosen."""
        maskable = ~np.isin(ids, self.special)
        if attention is not None:
            maskable &= attention.astype(bool)
        starts = None if self.continuation is None else ~self.continuation[ids]
        return mask_tokens(ids, maskable, rngs, self.mask_prob, self.mask_id, self.replacement_ids, starts)

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        ids, attention = pad(rows["input_ids"], self.pad_id)
        input_ids, labels = self.mask(ids, attention, rngs)
        batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                 "masked_positions": torch.from_numpy(np.flatnonzero(labels != -100))}
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
        mask_prob: ``data.mask_prob``, the fraction of tokens (or words) to predict (0.15 in BERT).
        whole_word: ``data.whole_word``, mask whole words: the pieces ``##`` continues (WordPiece).

    Raises:
        UerError: ``mask_prob`` outside (0, 1), a tokenizer without mask or pad token, or
            ``whole_word`` with a vocabulary that has no ``##`` pieces.
    """

    def __init__(self, tokenizer, mask_prob: float = 0.15, whole_word: bool = False):
        if not 0 < mask_prob < 1:
            raise UerError(f"data.mask_prob={mask_prob}: must be between 0 and 1")
        continuation = word_continuations(tokenizer) if whole_word else None
        try:
            super().__init__(tokenizer.all_special_ids, tokenizer.pad_token_id, tokenizer.mask_token_id,
                             tokenizer.vocab_size, mask_prob, continuation)
        except ValueError as e:
            raise UerError(f"data.tokenizer: {e}") from None


def word_continuations(tokenizer) -> np.ndarray:
    """(V,) bool: True for the ids of WordPiece pieces that continue a word (``##...``).

    Raises:
        UerError: the vocabulary has no such piece (not a WordPiece tokenizer), so words cannot be
            told apart for whole-word masking.
    """
    table = np.zeros(tokenizer.vocab_size, dtype=bool)
    for token, i in tokenizer.backend.get_vocab(with_added_tokens=False).items():
        table[i] = token.startswith("##")
    if not table.any():
        raise UerError("data.whole_word=true needs a WordPiece vocabulary (pieces marked ##); this tokenizer has none")
    return table
