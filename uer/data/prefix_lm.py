"""Batches for prefix language modeling (Raffel et al. 2020, section 3.2.1; Dong et al. 2019, UniLM):
source and target in one causal stack, the source visible in full, the loss on the target only."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.padding import pad
from uer.data.seq2seq import IGNORE_INDEX


class PrefixLmCollator:
    """Pads rows of processor ``prefixlm`` (``input_ids`` = source + target, ``token_type_ids`` 0 on
    the source and 1 on the target).

    ``__call__(rows: dict[str, list], rngs) -> {input_ids (B, S), attention_mask (B, S),
    token_type_ids (B, S) (0 on padding), labels (B, S)}``; labels are the input ids on target
    positions and -100 on source and padding positions (the LM target shifts them by one).
    ``rngs`` is accepted for the common collator interface and unused.

    Args:
        pad_id: id written into padded positions.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        ids, attention = pad(rows["input_ids"], self.pad_id)
        token_types = pad(rows["token_type_ids"], 0)[0]
        attention = np.ones_like(ids) if attention is None else attention
        labels = np.where(token_types == 1, ids, IGNORE_INDEX)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attention),
                "token_type_ids": torch.from_numpy(token_types), "labels": torch.from_numpy(labels)}
