"""Recurrent encoders: LSTM (Hochreiter & Schmidhuber 1997) and GRU (Cho et al. 2014), one- or
two-directional, run over packed sequences so padding never enters the recurrence (UER-py's
``lstm``, ``gru``, ``bilstm`` and ``bigru`` encoders; the BiLSTM under ELMo, Peters et al. 2018)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
"""``cell`` name -> the torch recurrent module."""


class RnnEncoder(nn.Module):
    """A stack of ``torch.nn.LSTM`` / ``torch.nn.GRU`` layers with the encoder interface.

    ``forward(x: (B, S, E), mask: (B, S) bool | None, **context) -> (B, S, D)``; ``mask`` True =
    real token, right-padded (each row's real tokens come first, as every uer collator pads). A
    padded row's outputs equal those of the same row unpadded, and padded positions' outputs are
    zero: a left-to-right recurrence never reaches the padding after a row's last real token (the
    backward stack reads each row's real tokens reversed, its padding still last), so the padded
    steps run and are discarded; with ``pack`` the rows are packed instead
    (:func:`torch.nn.utils.rnn.pack_padded_sequence`) and padded steps never run. One-directional
    stacks are causal (position t sees positions <= t) and serve causal LM targets as a Transformer
    with ``mask: causal`` does.

    Bidirectional: two separate stacks, one reading left to right and one right to left, each of
    D/2 units, their top outputs concatenated: ``[..., :D/2]`` the forward states, which have seen
    positions <= t only, and ``[..., D/2:]`` the backward states, which have seen positions >= t
    only (ELMo's biLM, Peters et al. 2018 §3.1; UER-py's ``bilstm``). Unlike
    ``torch.nn.LSTM(bidirectional=True)``, whose upper layers read both directions of the layer
    below, no state of one direction has seen the other side, so :class:`uer.targets.BilmTarget`
    can score each half against the token beyond its side. The total width D stays the model's
    ``dim``, as UER-py's ``bilstm`` splits ``hidden_size`` between the directions.

    Parameters: ``rnn.{weight,bias}_{ih,hh}_l{i}`` (torch's names; the forward stack) and
    ``backward_rnn.*`` (bidirectional only); they keep torch's uniform(±1/sqrt(units)) initialization.

    Args:
        input_dim: E, the embedding width.
        dim: D, the output width (both directions together).
        num_layers: stacked recurrent layers.
        cell: ``lstm`` or ``gru``.
        bidirectional: run a second, right-to-left recurrence in every layer.
        dropout: on the outputs of every layer (between layers inside torch, and on the last one here).
        pack: run padded batches as packed sequences. Same outputs; on CPU 2.3-2.6x slower than running
            the padded steps (LSTM 2 x 512, 8 x 128 with every other row padded,
            benchmarks/rnn_cnn_throughput.py --padded); on CUDA it saves the padded steps.

    Raises:
        ValueError: unknown ``cell``; a bidirectional ``dim`` that is odd.
    """

    def __init__(self, *, input_dim: int, dim: int, num_layers: int, cell: str = "lstm",
                 bidirectional: bool = False, dropout: float = 0.1, pack: bool = False):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}; choose one of {sorted(CELLS)}")
        if bidirectional and dim % 2:
            raise ValueError(f"a bidirectional encoder splits dim between its directions: dim={dim} must be even")
        stack = partial(CELLS[cell], input_dim, dim // 2 if bidirectional else dim, num_layers=num_layers,
                        batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.pack = pack
        self.rnn = stack()
        self.backward_rnn = stack() if bidirectional else None
        self.dropout = nn.Dropout(dropout)

    def init_weights(self, std: float) -> None:
        """Keep torch's recurrent initialization (uniform ±1/sqrt(units)): a normal(0, std) draw
        scaled for Transformers would start the gates saturated or vanishing. ``std`` is unused."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, cache=None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, E), mask: (B, S) bool or None -> (B, S, D).

        ``position_ids`` is accepted as context and unused (a recurrence knows order by itself).

        Raises:
            ValueError: a ``cache`` (incremental decoding keeps a KV cache, which a recurrence has
                not), or a mask that is not right padding.
        """
        if cache is not None:
            raise ValueError("the rnn encoder has no KV cache for incremental decoding; generate without a cache")
        if mask is None:
            lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
        else:
            lengths = mask.sum(1)
            if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]):
                raise ValueError("the rnn encoder needs right padding: each row's real tokens first")
        packed = lengths if self.pack and mask is not None else None
        out = _run(self.rnn, x, packed)
        if self.backward_rnn is not None:
            backward = _run(self.backward_rnn, _reversed(x, lengths), packed)
            out = torch.cat([out, _reversed(backward, lengths)], dim=-1)
        out = self.dropout(out)
        return out if mask is None else out * mask[..., None].to(out.dtype)


def _run(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``rnn`` over x (B, S, E) -> (B, S, units): over every position, or packed by ``lengths`` (B,)
    (a row of length 0 runs one step, which the caller zeroes)."""
    if lengths is None:
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def _reversed(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (B, S, ...) with each row's first ``lengths[b]`` positions in reverse order and its
    padding left in place (its own inverse)."""
    positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return x.gather(1, index.reshape(*index.shape, *[1] * (x.dim() - 2)).expand_as(x))
