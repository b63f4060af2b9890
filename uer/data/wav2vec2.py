"""What wav2vec 2.0 pretraining draws per utterance (Baevski et al. 2020, §3.1 and §4.2): the masked
spans of latent frames and the distractors of each masked frame, from the utterance's own seeded
generator (Hugging Face ``_compute_mask_indices`` and ``_sample_negative_indices``), and the collator
of ``data=wav2vec2`` that adds them to the waveform batches."""
from __future__ import annotations

import numpy as np
import torch

from uer.data.speech import WaveformCollator
from uer.errors import UerError
from uer.layers.conv_lengths import conv_output_lengths


def span_mask(rng: np.random.Generator, frames: int, length: int, mask_prob: float, mask_length: int,
              min_masks: int = 2) -> np.ndarray:
    """Mask spans of ``mask_length`` frames among the utterance's first ``frames`` of ``length``.

    The paper samples each frame as a span start with probability p = ``mask_prob`` (0.065) and masks
    the M = ``mask_length`` (10) frames from each start (about 49% masked once spans overlap). As
    Hugging Face's ``_compute_mask_indices`` (whose ``mask_time_prob`` is p · M), the number of starts
    is ``int(p · frames + u)`` with u uniform in [0, 1) (probabilistic rounding), at least
    ``min_masks``, at most what fits (``frames - M + 1`` starts, ``length // M`` spans), drawn without
    replacement from the starts whose span ends within the real frames.

    Args:
        rng: the utterance's generator.
        frames: its real frames (the feature encoder's output length of its samples).
        length: T', the batch's frame count (>= ``frames``).
        mask_prob: p, the probability of a frame to start a span.
        mask_length: M.
        min_masks: the fewest spans.

    Returns:
        (length,) bool, True = masked; never beyond ``frames``.

    Raises:
        ValueError: ``mask_length`` < 1 or > ``length``.
    """
    if not 1 <= mask_length <= length:
        raise ValueError(f"mask_length {mask_length} must be in [1, {length}] (the frames of the batch)")
    starts = int(mask_prob * frames + rng.random())
    starts = min(max(starts, min_masks), length // mask_length, max(frames - mask_length + 1, 0))
    mask = np.zeros(length, dtype=bool)
    chosen = rng.choice(max(frames - mask_length + 1, 0), starts, replace=False)
    for start in chosen:
        mask[start:start + mask_length] = True
    return mask


def sample_negatives(rng: np.random.Generator, mask: np.ndarray, num_negatives: int, offset: int = 0) -> np.ndarray:
    """K = ``num_negatives`` distractors for every masked frame: other masked frames of the same
    utterance, uniformly, never the frame itself (drawn with replacement, as Hugging Face's
    ``_sample_negative_indices``; the paper samples them from the masked frames too, §3.2).

    Args:
        rng: the utterance's generator.
        mask: (T',) bool, the utterance's masked frames (at least 2 for a distractor to exist).
        num_negatives: K.
        offset: added to every index: the utterance's row times T', so that the indices address the
            batch's frames flattened to (B·T').

    Returns:
        (T', K) int64: at masked frames, indices of distractors (+ ``offset``); elsewhere ``offset``
        (unused by the loss).
    """
    out = np.zeros((mask.shape[0], num_negatives), dtype=np.int64)
    where = np.flatnonzero(mask)
    n = len(where)
    if n > 1:
        draws = rng.integers(0, n - 1, size=(n, num_negatives))
        draws += draws >= np.arange(n)[:, None]  # skip the frame itself, keeping the others uniform
        out[where] = where[draws]
    return out + offset


class Wav2Vec2Collator(WaveformCollator):
    """:class:`~uer.data.speech.WaveformCollator`'s ``input_values`` and ``attention_mask`` (and
    ``labels`` with ``transcripts``) plus, drawn from each utterance's own generator (so they depend
    on (seed, epoch, sample index) alone):

    - ``mask_time_indices`` (B, T') bool: :func:`span_mask` over the utterance's frames, T' the
      feature encoder's frames of the longest utterance (:func:`~uer.layers.conv_lengths.conv_output_lengths`
      of ``conv_kernel``/``conv_stride``, the model's, by interpolation in ``conf/data/wav2vec2.yaml``);
    - ``sampled_negative_indices`` (B, T', K) int64: :func:`sample_negatives`, indices into the
      batch's B·T' frames.

    Args:
        conv_kernel, conv_stride: the model's feature encoder.
        mask_prob: p, a frame's probability to start a masked span (0.065).
        mask_length: M, frames per span (10).
        min_masks: the fewest spans per utterance (2, as Hugging Face's pretraining script).
        num_negatives: K (100).
        normalize, transcripts: as :class:`~uer.data.speech.WaveformCollator`.

    Raises:
        UerError: ``mask_prob`` outside (0, 1), ``mask_length`` < 1, ``min_masks`` < 2 (a masked frame
            needs another as distractor), ``num_negatives`` < 1, kernels and strides of different lengths;
            (in ``__call__``) an utterance shorter than ``mask_length`` frames.
    """

    def __init__(self, conv_kernel: list[int], conv_stride: list[int], mask_prob: float = 0.065,
                 mask_length: int = 10, min_masks: int = 2, num_negatives: int = 100, normalize: bool = True,
                 transcripts: bool = False):
        super().__init__(normalize, transcripts)
        if not 0 < mask_prob < 1:
            raise UerError(f"data.mask_prob={mask_prob}: must be between 0 and 1")
        for key, value, least in (("mask_length", mask_length, 1), ("min_masks", min_masks, 2),
                                  ("num_negatives", num_negatives, 1)):
            if not isinstance(value, int) or value < least:
                raise UerError(f"data.{key}={value}: must be an integer >= {least}")
        if len(conv_kernel) != len(conv_stride):
            raise UerError(f"data.conv_kernel and data.conv_stride: {len(conv_kernel)} kernels, {len(conv_stride)} strides")
        self.kernels, self.strides = list(conv_kernel), list(conv_stride)
        self.mask_prob, self.mask_length, self.min_masks, self.num_negatives = mask_prob, mask_length, min_masks, num_negatives

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        batch = super().__call__(rows, rngs)
        frames = conv_output_lengths(batch["attention_mask"].sum(-1), self.kernels, self.strides).tolist()
        length = max(frames)
        if min(frames) < self.mask_length:
            raise UerError(f"an utterance of {min(frames)} frames is shorter than data.mask_length={self.mask_length} "
                           f"({self.mask_length * 20} ms at the base strides); filter out such short recordings")
        masks = np.stack([span_mask(rng, n, length, self.mask_prob, self.mask_length, self.min_masks)
                          for rng, n in zip(rngs, frames)])
        negatives = np.stack([sample_negatives(rng, mask, self.num_negatives, i * length)
                              for i, (rng, mask) in enumerate(zip(rngs, masks))])
        batch["mask_time_indices"] = torch.from_numpy(masks)
        batch["sampled_negative_indices"] = torch.from_numpy(negatives)
        return batch
