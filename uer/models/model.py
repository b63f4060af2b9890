"""The model: five pluggable parts (embedding, encoder, target embedding, decoder, target)."""
from __future__ import annotations

import torch
from torch import nn

from uer.targets.output import TargetOutput


class Model(nn.Module):
    """Embedding -> encoder [-> target embedding + decoder] -> target.

    ``forward(batch) -> TargetOutput``; ``encode(batch) -> (hidden: (B, S, D), mask: (B, S) bool | None)``.

    Weight tying is declared by the parts, not coded per model: any submodule with a
    ``tied_weights`` dict ``{local parameter name: dotted model path}`` (e.g. an MLM head's
    ``{"decoder.weight": "embedding.word.weight"}``) gets that parameter replaced by the named one.

    Args:
        embedding: ``forward(batch) -> (x, mask)``.
        encoder: ``forward(x, mask) -> hidden``.
        target: ``forward(hidden, batch) -> TargetOutput`` and ``num_items(batch)``.
        tgt_embedding, decoder: the seq2seq parts (both or neither).
        init_std: std of the normal init of linear and embedding weights (BERT's 0.02); biases 0.

    Raises:
        ValueError: only one of tgt_embedding/decoder given, or a tie names a missing parameter or
            one of another shape.
    """

    def __init__(self, embedding: nn.Module, encoder: nn.Module, target: nn.Module,
                 tgt_embedding: nn.Module | None = None, decoder: nn.Module | None = None,
                 init_std: float = 0.02):
        super().__init__()
        if (tgt_embedding is None) != (decoder is None):
            raise ValueError("tgt_embedding and decoder go together: give both or neither")
        self.embedding = embedding
        self.encoder = encoder
        self.tgt_embedding = tgt_embedding
        self.decoder = decoder
        self.target = target
        self.init_weights(init_std)
        self.tie_weights()

    def init_weights(self, std: float) -> None:
        """Normal(0, std) for linear/conv weights, zeros for their biases (Devlin et al. 2019)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Apply every submodule's ``tied_weights`` declaration (see the class docstring)."""
        for owner_name, owner in self.named_modules():
            for local, path in getattr(owner, "tied_weights", {}).items():
                try:
                    source = self.get_parameter(path)
                except AttributeError:
                    raise ValueError(f"{owner_name}.{local} is tied to {path}, which is not a parameter "
                                     "of this model") from None
                *parents, leaf = local.split(".")
                holder = owner.get_submodule(".".join(parents)) if parents else owner
                if getattr(holder, leaf).shape != source.shape:
                    raise ValueError(f"cannot tie {owner_name}.{local} {tuple(getattr(holder, leaf).shape)} "
                                     f"to {path} {tuple(source.shape)}")
                setattr(holder, leaf, source)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Source side: batch -> (hidden (B, S, D), mask (B, S) bool or None)."""
        x, mask = self.embedding(batch)
        return self.encoder(x, mask), mask

    def forward(self, batch: dict[str, torch.Tensor]) -> TargetOutput:
        hidden, mask = self.encode(batch)
        if self.decoder is not None:
            y, y_mask = self.tgt_embedding(batch)
            hidden = self.decoder(y, y_mask, hidden, mask)
        return self.target(hidden, batch)

    def num_items(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Target name -> number of predictions in the batch (see :class:`uer.targets.Targets`)."""
        return self.target.num_items(batch)
