"""Position-wise feed-forward blocks: the dense FFN of Vaswani et al. (2017) and the gated FFN
(GLU variants, Shazeer 2020) used by T5 v1.1 and LLaMA."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import Dropout

ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf GELU (BERT, ViT)
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # tanh approximation (GPT-2)
    "relu": F.relu,
    "silu": F.silu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),  # sigmoid approximation (CLIP, Radford et al. 2021)
}


def get_activation(name: str):
    """Return the activation function called ``name`` (one of :data:`ACTIVATIONS`).

    Raises:
        ValueError: unknown name.
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


class FeedForward(nn.Module):
    """``W2 · act(W1 · x)`` or, when ``gated``, ``W2 · (act(Wg · x) * W1 · x)`` (T5 v1.1's gated GELU
    has ``gate`` = ``wi_0``, ``up`` = ``wi_1``).

    Shapes: (B, S, D) -> (B, S, D) with an inner width ``ffn_dim``.

    Args:
        dim: model width D.
        ffn_dim: inner width.
        activation: a name from :data:`ACTIVATIONS`.
        dropout: dropout probability on the output.
        activation_dropout: dropout on the inner activations (BART's ``activation_dropout``; T5
            applies its dropout rate there too).
        bias: whether the linear maps have biases.
        gated: use a gated linear unit (GEGLU / SwiGLU by ``activation``).

    Raises:
        ValueError: unknown ``activation``, or a dropout probability outside [0, 1].
    """

    def __init__(self, *, dim: int, ffn_dim: int, activation: str = "gelu", gated: bool = False,
                 dropout: float = 0.0, activation_dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.act = get_activation(activation)
        self.up = nn.Linear(dim, ffn_dim, bias=bias)
        self.gate = nn.Linear(dim, ffn_dim, bias=bias) if gated else None
        self.down = nn.Linear(ffn_dim, dim, bias=bias)
        self.dropout = Dropout(dropout)
        self.activation_dropout = Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, S, D) -> (B, S, D)."""
        if self.gate is None:
            h = self.act(self.up(x))
        else:
            h = self.act(self.gate(x)) * self.up(x)
        return self.dropout(self.down(self.activation_dropout(h)))
