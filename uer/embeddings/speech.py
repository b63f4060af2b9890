"""Speech embedding of S2T (Wang et al. 2020, "fairseq S2T"): strided 1-D convolutions with GLU that
subsample filter-bank frames (Hugging Face's ``Conv1dSubsampler`` in ``Speech2TextEncoder``)."""
from __future__ import annotations

import math

import torch
from torch import nn


def subsampled_lengths(lengths: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Frames left after ``num_layers`` stride-2 convolutions padded by kernel // 2 (odd kernels):
    ``L -> (L - 1) // 2 + 1`` per layer, as ``Speech2TextPreTrainedModel._get_feat_extract_output_lengths``."""
    for _ in range(num_layers):
        lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
    return lengths


class SpeechEmbedding(nn.Module):
    """Filter banks ``batch[field]`` (B, F, C) -> (B, F', D) with F' ≈ F / 2^n, times sqrt(D) when
    ``scale``; the frame mask (B, F) becomes the mask of the subsampled frames (B, F').

    Layer i is ``Conv1d(kernel k_i, stride 2, padding k_i // 2)`` followed by a GLU over channels
    (Dauphin et al. 2017), which halves them: the inner layers output ``conv_channels`` (GLU ->
    conv_channels / 2), the last 2·D (GLU -> D). A subsampled frame is real when it lies within the
    subsampled length of the real frames (:func:`subsampled_lengths`), so right padding is assumed,
    as the filter-bank collator and ``Speech2TextFeatureExtractor`` produce. Padded frames go through
    the convolutions as they are (zeros from the collator), as in the reference. Sinusoidal positions
    are a separate part after this one (:class:`~uer.embeddings.SinusoidalPositionEmbedding`, fairseq
    frequencies, offset padding_idx + 1). Parameters: ``conv.{i}.weight`` (out, in, k), ``conv.{i}.bias``.

    Args:
        input_dim: C, filter-bank bins per frame (80) times input channels.
        conv_channels: output channels of the inner convolutions (before the GLU), even.
        dim: D.
        kernel_sizes: one odd kernel size per convolution (S2T: 5, 5: 4x subsampling).
        scale: multiply the output by sqrt(D) (Hugging Face's ``scale_embedding``, ``embed_scale``).
        field: batch key of the features.

    Raises:
        ValueError: no kernel, an even kernel, an odd or non-positive ``conv_channels``; (in forward) ``x`` is
            given (this part starts the sequence) or the features have another number of bins.
    """

    def __init__(self, input_dim: int, conv_channels: int, dim: int, kernel_sizes: list[int] = (5, 5),
                 scale: bool = True, field: str = "input_features"):
        super().__init__()
        kernel_sizes = list(kernel_sizes)
        if not kernel_sizes or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes {kernel_sizes}: give at least one, each odd")
        if conv_channels < 2 or conv_channels % 2:
            raise ValueError(f"conv_channels {conv_channels} must be even and >= 2 (the GLU halves it)")
        last = len(kernel_sizes) - 1
        self.conv = nn.ModuleList(
            nn.Conv1d(input_dim if i == 0 else conv_channels // 2, 2 * dim if i == last else conv_channels,
                      kernel_size=k, stride=2, padding=k // 2)
            for i, k in enumerate(kernel_sizes))
        self.input_dim = input_dim
        self.field = field
        self.scale = math.sqrt(dim) if scale else None

    def forward(self, batch: dict[str, torch.Tensor], x: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (subsampled frames (B, F', D), their mask (B, F') bool, or None when ``mask`` is None)."""
        if x is not None:
            raise ValueError("the speech embedding starts a sequence: list it first among the embedding parts")
        features = batch[self.field]
        if features.shape[-1] != self.input_dim:
            raise ValueError(f"{self.field} has {features.shape[-1]} bins per frame, the speech embedding "
                             f"expects {self.input_dim} (input_dim)")
        h = features.to(self.conv[0].weight.dtype).transpose(1, 2)  # (B, C, F)
        for conv in self.conv:
            h = nn.functional.glu(conv(h), dim=1)
        h = h.transpose(1, 2)
        if self.scale is not None:
            h = h * self.scale
        if mask is not None:
            lengths = subsampled_lengths(mask.long().sum(-1), len(self.conv))
            mask = torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]
        return h, mask
