"""The model: five pluggable parts (embedding, encoder, target embedding, decoder, target)."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.kv_cache import KVCache
from uer.targets.output import TargetOutput


class Model(nn.Module):
    """Embedding -> encoder [-> target embedding + decoder] -> target.

    ``forward(batch) -> TargetOutput`` (an encoder-decoder's target also finds the encoder's output in
    the batch as ``encoder_hidden_states`` (B, S, D) and ``encoder_attention_mask`` (B, S) bool | None);
    ``encode(batch) -> (hidden: (B, S, D), mask: (B, S) bool | None)``;
    seq2seq: ``decode(batch, memory, memory_mask) -> (B, T, D)``; ``logits(hidden) -> (B, T, V)``.

    Incremental decoding (generation) passes a :class:`~uer.layers.kv_cache.KVCache` to ``encode``
    (causal stacks, GPT-2) or ``decode`` (encoder-decoders); the batch then holds only the new ids and
    a mask over all cached + new positions, and positions continue from the cache's length unless the
    batch gives ``position_ids`` / ``decoder_position_ids``.

    A prefix LM's encoder (``mask: prefix``) gets ``prefix=token_type_ids == 0`` from ``encode``:
    source positions (type 0) see each other, target positions (type 1) are causal.

    Weight tying is declared by the parts, not coded per model: any submodule with a
    ``tied_weights`` dict ``{local parameter name: dotted model path}`` (e.g. an MLM head's
    ``{"decoder.weight": "embedding.word.weight"}``) gets that parameter replaced by the named one.
    Each part owns its initialization too (see :meth:`init_weights`).

    Two-tower models (CLIP, SBERT) need no branch here: a dual embedding returns
    ``(TwoStreams, None)`` in the ``(x, mask)`` slots, the dual encoder maps it to a
    :class:`~uer.layers.streams.TwoStreams` of hidden states and the target receives that as ``hidden``.

    Args:
        embedding: ``forward(batch) -> (x, mask)``.
        encoder: ``forward(x, mask, **context) -> hidden``; context is ``cache``, ``prefix`` (prefix
            LM) and ``position_ids`` (B, S) when the batch has them (or generation continues them).
        target: ``forward(hidden, batch) -> TargetOutput`` and ``num_items(batch)``.
        tgt_embedding, decoder: the seq2seq parts (both or neither).
        init_std: std of the normal init of linear and convolution weights (BERT's 0.02); biases 0.

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
        """Initialize every part, each by its own rule.

        Submodules are visited depth-first in registration order (the order of :meth:`modules`). A
        module that defines ``init_weights(std)`` is called with ``std`` and owns its whole subtree:
        nothing below it is touched here. Otherwise a linear or convolution layer gets the default,
        normal(0, std) weights and zero biases (Devlin et al. 2019); any other parameter keeps what
        its constructor drew (the word table's ``init_std``, position tables, a [CLS] vector).
        """
        _initialize(self, std, set())

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

    def encode(self, batch: dict[str, torch.Tensor], cache: KVCache | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Source side: batch -> (hidden (B, S, D), mask (B, S) bool or None), or
        ``(TwoStreams, None)`` for a two-tower model. With a ``cache`` (causal encoders only)
        ``hidden`` covers the new positions and ``mask`` all positions."""
        batch = _continue_positions(batch, "input_ids", "position_ids", cache)
        x, mask = self.embedding(batch)
        kwargs = {} if cache is None else {"cache": cache}
        if "position_ids" in batch:  # explicit, or continued from the cache: rotary attention needs them
            kwargs["position_ids"] = batch["position_ids"]
        if getattr(self.encoder, "mask", None) == "prefix":
            types = batch.get("token_type_ids")
            kwargs["prefix"] = None if types is None else types == 0
        return self.encoder(x, mask, **kwargs), mask

    def decode(self, batch: dict[str, torch.Tensor], memory: torch.Tensor, memory_mask: torch.Tensor | None,
               cache: KVCache | None = None) -> torch.Tensor:
        """Target side of a seq2seq model: ``decoder_input_ids`` (B, T) [and ``decoder_attention_mask``]
        with the encoder's ``memory`` (B, S, D) and ``memory_mask`` (B, S) -> (B, T, D). The
        decoder gets ``decoder_position_ids`` (explicit or continued from the cache) as ``position_ids``.

        Raises:
            ValueError: the model has no decoder.
        """
        if self.decoder is None:
            raise ValueError("this model has no decoder (not an encoder-decoder)")
        batch = _continue_positions(batch, "decoder_input_ids", "decoder_position_ids", cache)
        y, y_mask = self.tgt_embedding(batch)
        kwargs = {"position_ids": batch["decoder_position_ids"]} if "decoder_position_ids" in batch else {}
        return self.decoder(y, y_mask, memory, memory_mask, cache=cache, **kwargs)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V) through the target's LM head (the first target part with ``logits``).

        Raises:
            ValueError: no target part has an LM head.
        """
        for part in (self.target, *self.target.children()):
            if callable(getattr(part, "logits", None)):
                return part.logits(hidden)
        raise ValueError("the model's target has no LM head (logits)")

    def forward(self, batch: dict[str, torch.Tensor]) -> TargetOutput:
        hidden, mask = self.encode(batch)
        if self.decoder is not None:
            # the encoder's output stays in the batch for targets on the source side (hybrid CTC/attention)
            batch = {**batch, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
            hidden = self.decode(batch, hidden, mask)
        return self.target(hidden, batch)

    def num_items(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Target name -> number of predictions in the batch (see :class:`uer.targets.Targets`)."""
        return self.target.num_items(batch)


DEFAULT_INIT = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Module types :meth:`Model.init_weights` initializes with normal(0, std) and zero bias."""


def _initialize(module: nn.Module, std: float, seen: set[int]) -> None:
    """Initialize the children of ``module`` as :meth:`Model.init_weights` describes; ``seen``
    holds the ids of modules already visited (a module registered twice is initialized once)."""
    for child in module.children():
        if id(child) in seen:
            continue
        seen.add(id(child))
        if callable(getattr(child, "init_weights", None)):
            child.init_weights(std)
        elif isinstance(child, DEFAULT_INIT):
            nn.init.normal_(child.weight, std=std)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        else:
            _initialize(child, std, seen)


def _continue_positions(batch: dict[str, torch.Tensor], ids_field: str, field: str,
                        cache: KVCache | None) -> dict[str, torch.Tensor]:
    """``batch`` with ``field`` = past .. past + T - 1 (B, T) when a non-empty ``cache`` is given and
    the batch has no explicit positions, so new tokens continue the cached positions."""
    if cache is None or cache.length == 0 or field in batch:
        return batch
    ids = batch[ids_field]
    pos = torch.arange(cache.length, cache.length + ids.shape[1], device=ids.device)
    return {**batch, field: pos.expand(ids.shape[0], -1)}
