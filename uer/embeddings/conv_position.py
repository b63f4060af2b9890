"""wav2vec 2.0's convolutional relative position embedding (Baevski et al. 2020, §2; Mohamed et al.
2019): a wide grouped convolution over the frames, its output added to them (Hugging Face
``Wav2Vec2PositionalConvEmbedding`` and the zeroing of padded frames in ``Wav2Vec2Encoder``)."""
from __future__ import annotations

import math

import torch
from torch import nn

from uer.layers.feedforward import get_activation


class ConvPositionEmbedding(nn.Module):
    """x (B, T, D) -> x' + act(conv(x')) with x' = x with padded frames zeroed; the mask passes through.

    The convolution has ``kernel`` taps, ``groups`` groups and ``kernel // 2`` zero padding on each
    side, so an even kernel yields one frame too many, which is cut from the end (Hugging Face
    ``Wav2Vec2SamePadLayer``). Its weight is weight-normalized over the kernel dimension (Salimans &
    Kingma 2016; ``torch.nn.utils.parametrizations.weight_norm(dim=2)``), so the parameters are
    ``conv.parametrizations.weight.original0`` (the norms g, (1, 1, kernel)),
    ``conv.parametrizations.weight.original1`` (the direction v, (D, D / groups, kernel)) and
    ``conv.bias`` (D,), named as Hugging Face stores them.

    Padded frames are zeroed before the convolution so that they do not leak into real frames
    near the end of a shorter utterance (as the reference does).

    Args:
        dim: D.
        kernel: taps (wav2vec2-base: 128, about 2.6 s of frames).
        groups: convolution groups (16).
        activation: on the convolution's output (``gelu``).

    Raises:
        ValueError: ``dim`` not divisible by ``groups``, or an unknown activation.
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16, activation: str = "gelu"):
        super().__init__()
        if dim % groups:
            raise ValueError(f"position conv: dim {dim} is not divisible by groups {groups}")
        self.act = get_activation(activation)
        self.trim = 1 if kernel % 2 == 0 else 0
        conv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)

    def init_weights(self, std: float) -> None:
        """Normal weights with std 2·sqrt(1 / (kernel · D)) (the reference's; ``std`` is not used), g
        set to their norms, zero bias."""
        weight = self.conv.parametrizations.weight
        kernel, in_dim = self.conv.kernel_size[0], self.conv.in_channels
        with torch.no_grad():
            nn.init.normal_(weight.original1, std=2 * math.sqrt(1 / (kernel * in_dim)))
            weight.original0.copy_(torch.linalg.vector_norm(weight.original1, dim=(0, 1), keepdim=True))
            nn.init.zeros_(self.conv.bias)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, D), mask (B, T) bool or None -> ((B, T, D), mask)."""
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0)
        h = self.conv(x.transpose(1, 2))
        if self.trim:
            h = h[..., :-self.trim]
        return x + self.act(h).transpose(1, 2), mask
