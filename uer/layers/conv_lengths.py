"""Output lengths of a stack of unpadded 1-D convolutions: how many latent frames wav2vec 2.0's
feature encoder (Baevski et al. 2020, §2) makes of a waveform. One function, used by the waveform
embedding (its frame mask), the wav2vec 2.0 collator (the length of ``mask_time_indices``) and the
CTC target (the frames of each utterance)."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def conv_output_lengths(lengths: torch.Tensor | int, kernels: Sequence[int], strides: Sequence[int]
                        ) -> torch.Tensor | int:
    """Frames after the convolutions: per layer ``floor((n - kernel) / stride) + 1`` (``torch.nn.Conv1d``
    without padding or dilation), as Hugging Face's ``_get_feat_extract_output_lengths``.

    Args:
        lengths: input lengths in samples, an int or an int64 tensor of any shape.
        kernels, strides: per layer (wav2vec2-base: (10, 3, 3, 3, 3, 2, 2) and (5, 2, 2, 2, 2, 2, 2),
            a 400-sample (25 ms) receptive field every 320 samples (20 ms) at 16 kHz).

    Returns:
        The lengths in frames, the type of ``lengths``; an input shorter than the receptive field
        gives 0 or less (clamped to 0).

    Raises:
        ValueError: ``kernels`` and ``strides`` differ in length.
    """
    if len(kernels) != len(strides):
        raise ValueError(f"{len(kernels)} conv kernels but {len(strides)} conv strides: give one of each per layer")
    for kernel, stride in zip(kernels, strides):
        lengths = (lengths - kernel) // stride + 1
    return lengths.clamp(min=0) if isinstance(lengths, torch.Tensor) else max(lengths, 0)
