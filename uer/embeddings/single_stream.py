"""Single-stream vision-language embedding: text tokens and image patches in one sequence, each
marked by a learned modality type vector (ViLT, Kim et al. 2021, §3.1, Eq. 1-2)."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.streams import Stream


class SingleStreamEmbedding(nn.Module):
    """``forward(batch) -> Stream(x: (B, S_1 + ... + S_M, D), mask: (B, S_1 + ... + S_M) bool | None)``.

    Each stream is an ordinary embedding (``forward(batch) -> (x, mask)``, e.g. an
    :class:`~uer.embeddings.Embedding` of word + position + segment parts for the text and one of
    a patch part for the image) applied to the whole batch; the m-th stream's vectors get the
    modality type vector ``modality[m]`` added, then the streams are concatenated along the sequence
    in the order given, so one encoder attends over all of them (a single-stream model). For ViLT
    the order is text then image, as in Hugging Face's ``ViltEmbeddings``: position 0 is the text
    [CLS], which the image–text matching head pools, and the text positions come first, which the
    MLM head reads (labels (B, S_text) cover the first S_text positions).

    Masks: a stream without one (None: nothing padded) counts as all real where another stream has
    a mask; the result is None when no stream has one.

    Parameters: ``<stream name>.*`` (the text word table is ``embedding.text.word.weight``) and
    ``modality`` (M, D), the modality type table (Hugging Face's ``embeddings.token_type_embeddings``).

    Args:
        streams: name -> embedding, in sequence order (M >= 2 streams).
        dim: D, the width every stream returns.

    Raises:
        ValueError: fewer than two streams; (in forward) a stream of another width or batch size.
    """

    def __init__(self, streams: dict[str, nn.Module], dim: int):
        super().__init__()
        if len(streams) < 2:
            raise ValueError(f"a single-stream embedding joins at least two streams, got {list(streams)}")
        self.stream_names = list(streams)
        for name, module in streams.items():
            self.add_module(name, module)
        self.modality = nn.Parameter(torch.empty(len(streams), dim))
        nn.init.normal_(self.modality, std=0.02)

    def forward(self, batch: dict[str, torch.Tensor]) -> Stream:
        xs, masks = [], []
        for m, name in enumerate(self.stream_names):
            x, mask = getattr(self, name)(batch)
            if x.shape[-1] != self.modality.shape[1] or (xs and x.shape[0] != xs[0].shape[0]):
                raise ValueError(f"stream {name!r} gives {tuple(x.shape)}; the streams must share batch size "
                                 f"and width D={self.modality.shape[1]}")
            xs.append(x + self.modality[m])
            masks.append(mask)
        if all(mask is None for mask in masks):
            return Stream(torch.cat(xs, dim=1), None)
        full = [torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
                for x, mask in zip(xs, masks)]
        return Stream(torch.cat(xs, dim=1), torch.cat(full, dim=1))
