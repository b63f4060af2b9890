"""Batches for causal language modeling."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.errors import UerError


class LmCollator:
    """Pads packed token blocks; ``labels`` are the ids with padding set to -100 (the LM target
    shifts them by one position).

    ``__call__(rows: dict[str, list], rngs) -> {input_ids (B, S), labels (B, S), attention_mask
    (B, S) only when some row is padded}``. ``rngs`` is accepted for the common collator interface
    and unused: causal LM batches are not random.

    Args:
        pad_id: id written into padded positions (any valid id: they are masked and ignored).
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        ids, attention = pad(rows["input_ids"], self.pad_id)
        labels = ids.copy()
        batch = {"input_ids": torch.from_numpy(ids)}
        if attention is not None:
            labels[attention == 0] = -100
            batch["attention_mask"] = torch.from_numpy(attention)
        batch["labels"] = torch.from_numpy(labels)
        return batch


class CausalLm(LmCollator):
    """The collator of ``data=lm``: `LmCollator` padding with the tokenizer's pad token, or its
    end-of-text token when it has no pad.

    Raises:
        UerError: the tokenizer has neither.
    """

    def __init__(self, tokenizer):
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise UerError("data.tokenizer: causal LM needs a pad or end-of-text token")
        super().__init__(pad_id)
