"""wav2vec 2.0's waveform front end (Baevski et al. 2020, §2 and §4.2): the convolutional feature
encoder on raw 16 kHz audio and the feature projection, as ``(x, mask)`` embedding parts (Hugging
Face ``Wav2Vec2FeatureEncoder`` and ``Wav2Vec2FeatureProjection``)."""
from __future__ import annotations

import math

import torch
from torch import nn

from uer.layers.conv_lengths import conv_output_lengths
from uer.layers.dropout import Dropout
from uer.layers.feedforward import get_activation

CONV_NORMS = ("group", "layer")
"""``group``: one GroupNorm with a group per channel after the first convolution only (wav2vec2-base,
Hugging Face ``feat_extract_norm="group"``); ``layer``: a LayerNorm over channels after every
convolution (wav2vec2-large-lv60, ``"layer"``)."""
EXTRACT_FEATURES = "extract_features"
"""Batch key under which :class:`FeatureProjection` leaves the normalized latent features (B, T', C)
for the wav2vec 2.0 target's quantizer (Hugging Face's ``extract_features``)."""
MASK_FIELD = "mask_time_indices"
"""Batch key of the masked latent frames (B, T') bool (Hugging Face's name)."""


class ConvLayer(nn.Module):
    """One block of the feature encoder: Conv1d (no padding), optional norm, activation.
    (B, C_in, N) -> (B, C_out, floor((N - kernel) / stride) + 1). Parameters ``conv.*``, ``norm.*``."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, norm: str | None,
                 activation: str):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.norm = nn.GroupNorm(out_dim, out_dim)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_dim)
        self.act = get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "group":
            x = self.norm(x)
        elif self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.act(x)


class WaveformFeatureEncoder(nn.Module):
    """The convolutional feature encoder: ``input_values`` (B, N samples) -> latent frames (B, T', C)
    with T' = :func:`~uer.layers.conv_lengths.conv_output_lengths` (N) and C = ``conv_dim[-1]``
    (wav2vec2-base: 7 layers of 512 channels, one frame per 20 ms).

    It starts the sequence (``x`` must be None). The incoming ``mask`` is the sample mask (B, N)
    (``attention_mask``, 1 = real sample); the returned mask is the frame mask (B, T') bool: frame t is
    real when t < the frames of the utterance's real samples (Hugging Face
    ``_get_feature_vector_attention_mask``), or None when no sample is padded.

    Parameters: ``conv_layers.{k}.conv.weight`` (C_k, C_{k-1}, kernel_k) [``.bias``], and
    ``conv_layers.{k}.norm.*`` (group: layer 0 only; layer: every layer). Initialization: Kaiming
    normal convolutions, as Hugging Face's ``Wav2Vec2PreTrainedModel._init_weights``.

    Args:
        conv_dim, conv_kernel, conv_stride: channels, kernel and stride per layer (equal lengths).
        conv_bias: the convolutions have biases.
        norm: one of :data:`CONV_NORMS`.
        activation: after each block (``gelu``).
        field: batch key of the waveform.

    Raises:
        ValueError: lists of different lengths or empty, an unknown ``norm`` or activation; (in
            forward) ``x`` is given (the part must come first).
    """

    def __init__(self, conv_dim: list[int], conv_kernel: list[int], conv_stride: list[int], conv_bias: bool = False,
                 norm: str = "group", activation: str = "gelu", field: str = "input_values"):
        super().__init__()
        if not conv_dim or not len(conv_dim) == len(conv_kernel) == len(conv_stride):
            raise ValueError(f"conv_dim, conv_kernel and conv_stride need one entry per layer, got "
                             f"{len(conv_dim)}, {len(conv_kernel)} and {len(conv_stride)}")
        if norm not in CONV_NORMS:
            raise ValueError(f"unknown feature encoder norm {norm!r}; choose one of {', '.join(CONV_NORMS)}")
        self.kernels, self.strides, self.field = list(conv_kernel), list(conv_stride), field
        dims = [1, *conv_dim]
        self.conv_layers = nn.ModuleList(
            ConvLayer(dims[k], dims[k + 1], conv_kernel[k], conv_stride[k], conv_bias,
                      norm if norm == "layer" or k == 0 else None, activation) for k in range(len(conv_dim)))

    def init_weights(self, std: float) -> None:
        """Kaiming-normal convolution weights, biases uniform in ±1/sqrt(fan_in); norms at 1 and 0
        (``std`` is not used: the reference does not use it here)."""
        for layer in self.conv_layers:
            nn.init.kaiming_normal_(layer.conv.weight)
            if layer.conv.bias is not None:
                bound = 1 / math.sqrt(layer.conv.in_channels * layer.conv.kernel_size[0])
                nn.init.uniform_(layer.conv.bias, -bound, bound)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of waveforms of ``lengths`` samples (any shape, int64)."""
        return conv_output_lengths(lengths, self.kernels, self.strides)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (frames (B, T', C), frame mask (B, T') bool or None)."""
        if x is not None:
            raise ValueError("the waveform feature encoder starts a sequence: list it first among the embedding parts")
        h = batch[self.field][:, None].to(self.conv_layers[0].conv.weight.dtype)
        for layer in self.conv_layers:
            h = layer(h)
        h = h.transpose(1, 2)
        if mask is None:
            return h, None
        lengths = self.frames(mask.sum(-1))
        return h, torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]


class FeatureProjection(nn.Module):
    """LayerNorm over the latent features, a linear map C -> D and dropout; then, where the batch's
    ``mask_time_indices`` (B, T') is set, the learned mask vector replaces the projected frame (the
    masked time steps of wav2vec 2.0 pretraining, §3.1; Hugging Face ``masked_spec_embed``).

    The normalized features (B, T', C), before projection and masking, are left in the batch under
    :data:`EXTRACT_FEATURES`: the wav2vec 2.0 target quantizes them (the batch dict is the one the
    model then hands its target). The mask passes through.

    Parameters: ``norm.*`` (C), ``linear.*`` (D, C), ``masked_spec_embed`` (D,) when ``mask_embedding``.
    Initialization as the reference: linear uniform in ±1/sqrt(C), mask vector uniform in [0, 1).

    Args:
        conv_dim: the feature encoder's channels per layer; C = ``conv_dim[-1]``.
        dim: D. norm_eps: of the LayerNorm. dropout: after the projection.
        mask_embedding: hold the mask vector (Hugging Face creates it when ``mask_time_prob`` or
            ``mask_feature_prob`` > 0).

    Raises:
        ValueError: (in forward) ``mask_time_indices`` in the batch without ``mask_embedding``.
    """

    def __init__(self, conv_dim: list[int], dim: int, norm_eps: float = 1e-5, dropout: float = 0.0,
                 mask_embedding: bool = True):
        super().__init__()
        in_dim = conv_dim[-1]
        self.norm = nn.LayerNorm(in_dim, eps=norm_eps)
        self.linear = nn.Linear(in_dim, dim)
        self.dropout = Dropout(dropout)
        self.masked_spec_embed = nn.Parameter(torch.empty(dim)) if mask_embedding else None

    def init_weights(self, std: float) -> None:
        """The reference's initialization (``std`` is not used)."""
        bound = 1 / math.sqrt(self.linear.in_features)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        nn.init.uniform_(self.linear.bias, -bound, bound)
        if self.masked_spec_embed is not None:
            nn.init.uniform_(self.masked_spec_embed)

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T', C) -> ((B, T', D), mask)."""
        normed = self.norm(x)
        batch[EXTRACT_FEATURES] = normed
        x = self.dropout(self.linear(normed))
        masked = batch.get(MASK_FIELD)
        if masked is not None:
            if self.masked_spec_embed is None:
                raise ValueError(f"the batch has {MASK_FIELD} but the feature projection has no mask vector "
                                 "(mask_embedding: false)")
            x = torch.where(masked.bool()[..., None], self.masked_spec_embed.to(x.dtype), x)
        return x, mask
