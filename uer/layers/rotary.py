"""Rotary position embedding (RoPE, Su et al. 2021, RoFormer): q and k of every head are rotated by
angles proportional to their position, so q·k depends only on the relative offset. The layout is the
half rotation of Hugging Face's LLaMA (``rotate_half``: dimension i pairs with i + Dh/2), not the
interleaved pairs of the RoFormer paper; a converter for checkpoints in the other layout permutes
the q/k rows. Llama 3.1's frequency scaling (``scaling="llama3"``) stretches the long wavelengths
for a longer context, as ``transformers.modeling_rope_utils._compute_llama3_parameters``."""
from __future__ import annotations

import math

import torch
from torch import nn

SCALINGS = ("llama3",)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., Dh) -> (..., Dh): the halves [x1, x2] become [-x2, x1] (a 90° turn of each pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def llama3_inv_freq(inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float,
                    original_max_position_embeddings: int) -> torch.Tensor:
    """Llama 3.1's rescaled inverse frequencies (Dh/2,) (Meta's ``apply_scaling``; the same formula as
    transformers' ``llama3`` rope type): with L = ``original_max_position_embeddings``, pairs whose
    wavelength 2π/f is shorter than L / ``high_freq_factor`` keep f, those longer than
    L / ``low_freq_factor`` get f / ``factor``, and those between interpolate linearly in L / wavelength."""
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original_max_position_embeddings / low_freq_factor, inv_freq / factor, inv_freq)
    smooth = (original_max_position_embeddings / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelength >= original_max_position_embeddings / high_freq_factor) & \
        (wavelength <= original_max_position_embeddings / low_freq_factor)
    return torch.where(medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """Rotate queries and keys by their positions: ``forward(q, k, position_ids) -> (q, k)``.

    The angle of pair i at position p is ``p · f_i``, ``f_i = base^(-2i / Dh)``, i < Dh/2 (rescaled by
    :func:`llama3_inv_freq` with ``scaling="llama3"``). Shapes: q (B, H, T, Dh), k (B, Hkv, T, Dh),
    position_ids (B, T) or (1, T) int64; outputs have the inputs' shapes and dtype (angles are
    computed in float32). No parameters: one instance may serve every layer.

    Args:
        head_dim: Dh, even.
        base: the wavelength base θ (``rope_theta``: 10000 in RoFormer and LLaMA 2, 500000 in Llama 3).
        scaling: None (plain RoPE) or ``llama3`` (Llama 3.1 frequency scaling, which needs the four
            options below: 8.0, 1.0, 4.0 and 8192 in Llama 3.1).
        factor: how much longer the stretched context is.
        low_freq_factor, high_freq_factor: the wavelength bounds L / these of the interpolated band.
        original_max_position_embeddings: L, the pretraining context length.

    Raises:
        ValueError: ``head_dim`` odd, unknown ``scaling``, or a scaling option missing or not > 0
            (``high_freq_factor`` must exceed ``low_freq_factor``).
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, scaling: str | None = None,
                 factor: float | None = None, low_freq_factor: float | None = None,
                 high_freq_factor: float | None = None, original_max_position_embeddings: int | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        if not base > 0:
            raise ValueError(f"rotary base must be > 0, got {base}")
        self.head_dim = head_dim
        self.base = base
        self.scaling = scaling
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        if scaling is not None:
            options = {"factor": factor, "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                       "original_max_position_embeddings": original_max_position_embeddings}
            _check_scaling(scaling, options)
            inv_freq = llama3_inv_freq(inv_freq, **options)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        angles = position_ids.to(self.inv_freq.device, torch.float32)[..., None] * self.inv_freq  # (B, T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, Dh)
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}"


def _check_scaling(scaling: str, options: dict) -> None:
    """ValueError naming the first problem of a ``scaling`` and its options."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown rotary scaling {scaling!r}; choose one of {', '.join(SCALINGS)} (or null)")
    for name, value in options.items():
        if value is None or not value > 0:
            raise ValueError(f"rotary scaling {scaling} needs {name} > 0, got {value}")
    if options["high_freq_factor"] <= options["low_freq_factor"]:
        raise ValueError(f"rotary scaling {scaling} needs high_freq_factor > low_freq_factor, got "
                         f"{options['high_freq_factor']} and {options['low_freq_factor']}")
