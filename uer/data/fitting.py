"""Data-dependent initialization: model parts fitted to a sample of the training data before the
first step (the k-means image tokenizer of masked image modeling, :class:`uer.targets.mim.MimTarget`).

A part opts in with ``fit_to_data(batch)`` and ``num_fit_images`` (how many training rows it wants);
it gets one batch of those rows, collated by the run's own collator, unless its ``fitted`` is True
(initial weights that bring a fitted part: a uer MIM checkpoint; an imported Hugging Face BEiT has no
codebook and is fitted). Parts without them are untouched, so every other model builds exactly as before."""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from torch import nn

from uer.errors import UerError

log = logging.getLogger("uer")
FIT_STREAM = 0xF17
"""Tag of the generator streams of the fit (its sample and its collator draws), apart from training's."""


def fit_to_data(model: nn.Module, rows, indices: np.ndarray, collate: Callable, seed: int) -> None:
    """Call ``fit_to_data(batch)`` of every part of ``model`` that has one, with ``num_fit_images``
    rows of ``indices`` (a permutation seeded by ``seed``, then in index order) collated by ``collate``.
    Draws nothing from torch's global generator, so a run's other random numbers do not change.

    Raises:
        UerError: a part rejects the sample (e.g. too few distinct patches for its codebook).
    """
    for name, part in model.named_modules():
        fit = getattr(part, "fit_to_data", None)
        if not callable(fit) or getattr(part, "fitted", False):
            continue
        count = min(int(part.num_fit_images), len(indices))
        chosen = np.sort(np.random.default_rng([seed, FIT_STREAM]).permutation(indices)[:count])
        rngs = [np.random.default_rng([seed, FIT_STREAM, int(i)]) for i in chosen]
        try:
            fit(collate(rows[[int(i) for i in chosen]], rngs))
        except ValueError as e:
            raise UerError(f"model.{name}: {e}") from None
        log.info("model.%s fitted to %d training rows", name, count)
