"""What wav2vec 2.0 pretraining draws per utterance (Baevski et al. 2020, §3.1 and §4.2): the masked
spans of latent frames and the distractors of each masked frame, from the utterance's own seeded
generator (Hugging Face ``_compute_mask_indices`` and ``_sample_negative_indices``)."""
from __future__ import annotations

import numpy as np


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
