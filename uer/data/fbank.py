"""Kaldi-compatible log-mel filter banks with utterance-level mean and variance normalization: the
input features of S2T (Wang et al. 2020, fairseq S2T), equal to Hugging Face's
``Speech2TextFeatureExtractor`` (transformers 5, its numpy path) on the same 16 kHz audio.

The recipe is Kaldi's ``compute-fbank-feats`` defaults (Povey et al. 2011) as
``torchaudio.compliance.kaldi.fbank`` and transformers' ``spectrogram`` implement them: the waveform
scaled to 16-bit integer range (x 2**15), 25 ms frames (400 samples) every 10 ms (160), no padding
(``1 + (samples - 400) // 160`` frames), per frame the DC offset removed, pre-emphasis 0.97, the
Povey window (a Hann window to the power 0.85), a 512-point FFT, the power spectrum through 80
triangular filters evenly spaced on Kaldi's mel scale from 20 Hz to 8 kHz, floored at
:data:`MEL_FLOOR` and logged; then, per utterance, each of the 80 bins minus its mean and divided by
its standard deviation over the utterance's frames (CMVN; padding frames stay 0).

All utterances of a batch are framed together and transformed in one FFT and one matrix product
(float64, as transformers computes them), so a batch costs about one pass over its samples.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank, window_function

from uer.data.audio import SAMPLE_RATE
from uer.errors import UerError

NUM_MEL_BINS = 80
"""Filter-bank channels (S2T's ``input_feat_per_channel``)."""
FRAME_LENGTH = 400
"""Samples per analysis frame: 25 ms at 16 kHz."""
HOP_LENGTH = 160
"""Samples between frame starts: 10 ms at 16 kHz."""
FFT_LENGTH = 512
"""FFT points: the frame length rounded up to a power of two, as Kaldi does."""
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
"""Smallest filter-bank energy before the log (the value transformers' extractor passes; ~float32 eps)."""
MIN_STD = 1e-5
"""Standard deviations below this (a bin constant but for rounding) are not divided by."""


@functools.lru_cache(maxsize=1)
def _constants() -> tuple[torch.Tensor, torch.Tensor]:
    """(Povey window (400,), Kaldi mel filters (257, 80)) in float64, from transformers.audio_utils."""
    window = window_function(FRAME_LENGTH, "povey", periodic=False)
    filters = mel_filter_bank(num_frequency_bins=FFT_LENGTH // 2 + 1, num_mel_filters=NUM_MEL_BINS,
                              min_frequency=20, max_frequency=SAMPLE_RATE // 2, sampling_rate=SAMPLE_RATE,
                              norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
    return torch.from_numpy(window).double(), torch.from_numpy(filters).double()


def num_frames(samples: int) -> int:
    """Filter-bank frames of a waveform of ``samples`` samples: ``1 + (samples - 400) // 160``
    (0 when shorter than one frame)."""
    return 0 if samples < FRAME_LENGTH else 1 + (samples - FRAME_LENGTH) // HOP_LENGTH


def log_mel(waveforms: Sequence[np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
    """Kaldi log-mel filter banks of each waveform, unnormalized.

    Args:
        waveforms: B mono 16 kHz waveforms, each (samples,) float in [-1, 1], at least 400 samples.

    Returns:
        B float64 tensors, each (num_frames(samples), 80).

    Raises:
        UerError: a waveform is not one-dimensional or is shorter than one 25 ms frame.
    """
    frames, counts = [], []
    for i, waveform in enumerate(waveforms):
        x = torch.as_tensor(np.asarray(waveform), dtype=torch.float64)
        if x.dim() != 1 or x.numel() < FRAME_LENGTH:
            raise UerError(f"waveform {i}: needs a 1-D signal of at least {FRAME_LENGTH} samples (25 ms at "
                           f"16 kHz), got shape {tuple(x.shape)}")
        frames.append((x * 2**15).unfold(0, FRAME_LENGTH, HOP_LENGTH))
        counts.append(frames[-1].shape[0])
    window, filters = _constants()
    x = torch.cat(frames) if frames else torch.zeros(0, FRAME_LENGTH, dtype=torch.float64)
    x -= x.mean(dim=1, keepdim=True)
    emphasized = torch.empty_like(x)
    torch.mul(x[:, 0], 1 - PREEMPHASIS, out=emphasized[:, 0])
    torch.sub(x[:, 1:], x[:, :-1], alpha=PREEMPHASIS, out=emphasized[:, 1:])
    power = torch.view_as_real(torch.fft.rfft(emphasized.mul_(window), n=FFT_LENGTH)).square().sum(-1)
    return list((power @ filters).clamp_(min=MEL_FLOOR).log_().split(counts))


def utterance_cmvn(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean and variance normalization over the unpadded frames, as
    ``Speech2TextFeatureExtractor.utterance_cmvn``: ``(x - mean) / std`` (population std), padding 0.

    A bin (nearly) constant over an utterance (std below :data:`MIN_STD`, e.g. digital silence) is
    only centered (about 0), where transformers divides by (nearly) zero.

    Args:
        features: (B, T, C) float; mask: (B, T), nonzero on real frames.

    Returns:
        (B, T, C), the dtype of ``features``.
    """
    m = mask.to(features.dtype).unsqueeze(-1)
    count = m.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (features * m).sum(dim=1, keepdim=True) / count
    centered = (features - mean) * m
    std = (centered.square().sum(dim=1, keepdim=True) / count).sqrt()
    return centered / torch.where(std > MIN_STD, std, torch.ones_like(std))


def fbank_features(waveforms: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """S2T input features of a batch of waveforms: :func:`log_mel`, right-padded, then
    :func:`utterance_cmvn`; what ``Speech2TextFeatureExtractor(...)(waveforms, padding=True,
    sampling_rate=16000)`` returns.

    Returns:
        ``(input_features, attention_mask)``: (B, T, 80) float32 and (B, T) int64 (1 = real frame),
        T the longest utterance's frame count.

    Raises:
        UerError: see :func:`log_mel`.
    """
    banks = log_mel(waveforms)
    lengths = torch.tensor([bank.shape[0] for bank in banks])
    padded = torch.nn.utils.rnn.pad_sequence(banks, batch_first=True)
    mask = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()
    return utterance_cmvn(padded, mask).float(), mask
