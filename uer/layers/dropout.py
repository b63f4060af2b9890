"""Dropout (Srivastava et al. 2014) with a cheaper random mask on CPU.

``torch.bernoulli_`` draws one random number per element; on CPU that costs ~6 ns per element and
was a quarter of a bert_mini training step (profile in benchmarks/README.md). Here one 64-bit draw
(``Tensor.random_``) gives four 16-bit lanes; the low 15 bits of each lane are uniform on
[0, 32768) (``random_`` leaves the top bit of the word at 0, which the mask discards), and an element
is kept when its lane is at least ``round(p · 32768)``. The drop probability is therefore ``p``
rounded to a multiple of 2^-15 (0.1 becomes 0.100006), and kept elements are scaled by 1 / (1 - p)
as in ``torch.nn.functional.dropout``. On other devices ``torch.nn.functional.dropout`` is used
(CUDA's Philox generator is already cheap), so the lanes only serve CPU; so it is under
``torch.compile`` (the in-place ``random_`` would break the graph at every dropout, and inductor
fuses its own random numbers into the kernel).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LANE_RANGE = 1 << 15
"""Distinct values of one lane: the drop probability's resolution is 1 / LANE_RANGE."""


def check_probability(p: float) -> None:
    """Raises ValueError unless 0 <= p <= 1."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool tensor of ``shape``, each element True (kept) with probability 1 - p (p rounded to a
    multiple of 2^-15), drawn from torch's default generator of ``device``.

    Raises:
        ValueError: ``p`` outside [0, 1].
    """
    check_probability(p)
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_()
    lanes = words.view(torch.int16)[:numel].view(shape) & (LANE_RANGE - 1)
    return lanes >= round(p * LANE_RANGE)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element of ``x`` (any shape) with probability ``p`` and scale the rest by 1 / (1 - p)
    when ``training``; ``x`` itself otherwise. Gradients flow through the same mask.

    Raises:
        ValueError: ``p`` outside [0, 1].
    """
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, True)
    if p == 1:
        return x * 0
    return x * keep_mask(x.shape, p, x.device) * (1 / (1 - p))


class Dropout(nn.Module):
    """``torch.nn.Dropout`` with :func:`dropout`'s cheaper CPU mask; shapes are unchanged.

    Args:
        p: drop probability in [0, 1].

    Raises:
        ValueError: ``p`` outside [0, 1].
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        check_probability(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
