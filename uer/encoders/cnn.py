"""The gated convolutional encoder of Dauphin et al. 2017, "Language Modeling with Gated
Convolutional Networks": stacked 1-D convolutions, each gated by a gated linear unit (GLU), with a
residual connection around every block of layers, causally padded for language modeling (UER-py's
``gatedcnn`` encoder)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedConv(nn.Module):
    """One GLU convolution: h = (X∗W + b) ⊗ σ(X∗V + c) (Dauphin et al. 2017, eq. 1), W and V one
    convolution with 2·D output channels.

    ``forward(x: (B, C_in, S)) -> (B, D, S)``. Parameters: ``conv.weight`` (2D, C_in, k), ``conv.bias`` (2D,).

    Args:
        input_dim: C_in.  dim: D.  kernel_size: k.
        causal: pad k - 1 positions on the left, so output t sees inputs t - k + 1 .. t (language
            modeling); otherwise pad both sides and output t sees a window centered on t.
    """

    def __init__(self, input_dim: int, dim: int, kernel_size: int, causal: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(input_dim, 2 * dim, kernel_size)
        left = kernel_size - 1 if causal else (kernel_size - 1) // 2
        self.padding = (left, kernel_size - 1 - left)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(F.pad(x, self.padding)), dim=1)


class GatedCnnEncoder(nn.Module):
    """A first GLU convolution from the embedding width to D, then ``num_layers`` - 1 GLU
    convolutions D -> D with a residual connection around every ``block_size`` of them (a last,
    shorter block gets its residual too), as Dauphin et al. 2017 stack their residual blocks.

    ``forward(x: (B, S, E), mask: (B, S) bool | None, **context) -> (B, S, D)``; ``mask`` True =
    real token. Padded positions are zeroed before every convolution and in the output, so they
    act as the convolution's own zero padding: a padded row's outputs equal the unpadded row's.
    With ``causal`` (the default) position t sees positions <= t only and a causal LM target plugs
    in as on a Transformer with ``mask: causal``.

    Parameters: ``layers.{i}.conv.{weight,bias}`` (layer 0 is the input convolution). Sizes of the
    published configurations (UER-py's ``gatedcnn_9`` / ``gatedcnn_13``): E = 128, k = 4, blocks of
    2, D = 807 with 9 layers, D = 1268 with 13 layers (the GCNN-13 of Dauphin et al., Table 1).
    Dauphin et al. also weight-normalize the convolutions; this encoder does not.

    Args:
        input_dim: E.  dim: D.  num_layers: convolutions in all (>= 1).
        kernel_size: k.  block_size: convolutions per residual block.
        dropout: on every convolution's input.
        causal: see :class:`GatedConv`.
    """

    def __init__(self, *, input_dim: int, dim: int, num_layers: int, kernel_size: int = 4, block_size: int = 2,
                 dropout: float = 0.1, causal: bool = True):
        super().__init__()
        self.block_size = block_size
        self.layers = nn.ModuleList(GatedConv(input_dim if i == 0 else dim, dim, kernel_size, causal)
                                    for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, cache=None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, E), mask: (B, S) bool or None -> (B, S, D). ``position_ids`` is accepted as
        context and unused (convolutions see order by themselves).

        Raises:
            ValueError: a ``cache`` (incremental decoding keeps a KV cache, which this encoder has not).
        """
        if cache is not None:
            raise ValueError("the cnn encoder has no KV cache for incremental decoding; generate without a cache")
        keep = None if mask is None else mask[:, None, :].to(x.dtype)  # (B, 1, S)
        h = x.transpose(1, 2)  # (B, E, S): channels first for Conv1d
        residual = None
        for i, layer in enumerate(self.layers):
            h = layer(self.dropout(h if keep is None else h * keep))
            if i == 0:
                residual = h
            elif i % self.block_size == 0 or i == len(self.layers) - 1:
                h = residual = h + residual
        h = h.transpose(1, 2)
        return h if keep is None else h * keep.transpose(1, 2)
