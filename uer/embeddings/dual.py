"""Two embeddings side by side for two-tower models: CLIP's text and image (Radford et al. 2021),
SBERT's sentence A and sentence B (Reimers & Gurevych 2019)."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.streams import Stream, TwoStreams


def batch_view(batch: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The fields of ``batch`` whose key starts with ``prefix``, with the prefix removed
    (``b_input_ids`` -> ``input_ids`` for prefix ``b_``); the whole batch for prefix ``""``."""
    if not prefix:
        return batch
    return {key[len(prefix):]: value for key, value in batch.items() if key.startswith(prefix)}


class DualEmbedding(nn.Module):
    """``forward(batch) -> (TwoStreams, None)``: each stream is an ordinary single-stream embedding
    (``forward(batch) -> (x, mask)``) applied to its own view of the batch (:func:`batch_view`).

    The result fills the ``(x, mask)`` slots of the single-stream protocol, so
    :class:`uer.models.Model` hands it to the encoder (a :class:`uer.encoders.DualEncoder`) as it is;
    the mask slot is None because each stream carries its own mask.

    Args:
        first: embedding of the first stream (text; sentence A); parameters ``first.*``.
        second: embedding of the second stream (image; sentence B), or None to apply ``first`` to
            both (SBERT's shared tower: one set of weights).
        first_prefix, second_prefix: batch key prefixes of the streams' fields; ``""`` = the batch's
            own names (CLIP: ``input_ids`` for text and ``pixel_values`` for the image).

    Raises:
        ValueError: a shared embedding (``second`` None) would read the same fields twice.
    """

    def __init__(self, first: nn.Module, second: nn.Module | None = None, first_prefix: str = "",
                 second_prefix: str = ""):
        super().__init__()
        if second is None and first_prefix == second_prefix:
            raise ValueError(f"a shared dual embedding reads the same fields twice: give the streams different "
                             f"prefixes (both are {first_prefix!r})")
        self.first = first
        self.second = second
        self.first_prefix = first_prefix
        self.second_prefix = second_prefix

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[TwoStreams, None]:
        second = self.first if self.second is None else self.second
        return TwoStreams(Stream(*self.first(batch_view(batch, self.first_prefix))),
                          Stream(*second(batch_view(batch, self.second_prefix)))), None
