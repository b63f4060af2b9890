"""Low-rank adaptation of a linear map (LoRA, Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
Language Models"): ``y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ`` with A (r, in), B (out, r) and the scaling
s = alpha / r (or alpha / √r, rank-stabilized LoRA, Kalajdzievski 2023).

uer fuses the query, key and value projections into one ``qkv`` matrix (rows [q; k; v], see
:class:`uer.layers.attention.MultiHeadAttention`). So that LoRA on "q and v" is exactly LoRA on
separate ``q_proj`` and ``v_proj`` modules (as PEFT applies it to Llama or BERT), one
:class:`LoRALinear` holds an independent (A, B) pair per *slice* of its output rows: slice ``q`` adds
its update to the q rows only, ``v`` to the v rows, and the k rows stay untouched. A slice ``all``
covering every row is LoRA on the whole module (PEFT's LoRA on GPT-2's fused ``c_attn``).
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import Dropout

ALL = "all"
"""The slice name of an adapter over every output row of its module."""


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` (same ``weight`` and ``bias`` names, so base checkpoints load into it) with
    LoRA updates on slices of its output rows.

    Shapes: x (..., in) -> (..., out). Parameters ``lora_A.<slice>`` (r, in) and ``lora_B.<slice>``
    (rows of the slice, r); initialized as the reference (A kaiming-uniform with a = √5, B zeros),
    so a fresh adapter leaves the output unchanged.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        slices: slice name -> (first row, end row) of the output, non-overlapping.
        r: rank of each update.  alpha: scaling numerator.
        dropout: dropout on the adapter's input (training only).
        rslora: scale by alpha / √r instead of alpha / r.

    Raises:
        ValueError: r < 1, no slices, or slices outside the output or overlapping.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 slices: dict[str, tuple[int, int]], r: int, alpha: float, dropout: float = 0.0,
                 rslora: bool = False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if r < 1:
            raise ValueError(f"LoRA rank r={r}: must be >= 1")
        spans = sorted(slices.values())
        if not spans or any(a < 0 or b > out_features or a >= b for a, b in spans) or \
                any(b > c for (_, b), (c, _) in itertools.pairwise(spans)):
            raise ValueError(f"LoRA slices {slices} do not fit {out_features} output rows without overlap")
        self.slices = dict(sorted(slices.items(), key=lambda kv: kv[1]))
        self.r, self.alpha, self.rslora = r, alpha, rslora
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        self.lora_dropout = Dropout(dropout)
        factory = {"device": device, "dtype": dtype}
        self.lora_A = nn.ParameterDict({n: nn.Parameter(torch.empty(r, in_features, **factory)) for n in self.slices})
        self.lora_B = nn.ParameterDict({n: nn.Parameter(torch.empty(b - a, r, **factory))
                                        for n, (a, b) in self.slices.items()})
        self.reset_adapters()

    @classmethod
    def wrap(cls, linear: nn.Linear, **options) -> LoRALinear:
        """A :class:`LoRALinear` around ``linear``'s own weight and bias parameters (shared, not copied;
        ``options`` as the constructor's keywords)."""
        w = linear.weight
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device,
                     dtype=w.dtype, **options)
        module.weight = linear.weight
        module.bias = linear.bias
        return module

    def reset_adapters(self) -> None:
        """A ~ kaiming-uniform (a = √5, as ``nn.Linear``), B = 0 (Hu et al. 2021, §4.1; loralib)."""
        for name in self.slices:
            nn.init.kaiming_uniform_(self.lora_A[name], a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[name])

    def delta(self) -> torch.Tensor:
        """The weight update s·B·A laid out over the output rows: (out, in), zero outside the slices."""
        full = self.weight.new_zeros(self.weight.shape)
        for name, (a, b) in self.slices.items():
            full[a:b] = self.scaling * (self.lora_B[name] @ self.lora_A[name])
        return full

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded into the weight (W + s·B·A): same outputs in eval."""
        out = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight + self.delta())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        out.weight.requires_grad_(self.weight.requires_grad)
        if out.bias is not None:
            out.bias.requires_grad_(self.bias.requires_grad)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        h = self.lora_dropout(x)
        pieces, row = [], 0
        for name, (a, b) in self.slices.items():
            if a > row:
                pieces.append(y.new_zeros(*y.shape[:-1], a - row))
            pieces.append(F.linear(F.linear(h, self.lora_A[name]), self.lora_B[name]) * self.scaling)
            row = b
        if row < self.out_features:
            pieces.append(y.new_zeros(*y.shape[:-1], self.out_features - row))
        return y + torch.cat(pieces, dim=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora r={self.r}, alpha={self.alpha}, slices={list(self.slices)}"
