"""Sampling the next token: temperature, top-k (Fan et al. 2018) and nucleus / top-p (Holtzman et al.
2020) filtering of the logits, then a draw from the softmax with a seeded generator.

The filters follow Hugging Face's ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and
``TopPLogitsWarper`` (applied in that order); a removed token gets logit ``-inf``.
"""
from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th kept too), (B, V) -> (B, V).

    Raises:
        ValueError: ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most probable tokens whose probability mass is >= ``p`` (at least
    one token), (B, V) -> (B, V).

    Raises:
        ValueError: ``p`` outside (0, 1].
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= p  # the first token always has mass_before 0 < p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


class Sampler:
    """Draws one token per row from filtered logits: ``sampler(logits (B, V)) -> (B,) int64``.

    Args:
        temperature: logits are divided by it (> 0; 1 = unchanged).
        top_k: keep the k most probable tokens (None = all).
        top_p: keep the smallest set with mass >= p (None or 1.0 = all).
        generator: the torch.Generator the draws come from (seeded by the caller, on the logits' device).

    Raises:
        ValueError: temperature <= 0, or a bad top_k/top_p (see the filters).
    """

    def __init__(self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; use strategy greedy for argmax")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.generator = generator

    def filter(self, logits: torch.Tensor) -> torch.Tensor:
        """Temperature, then top-k, then top-p: (B, V) -> (B, V) float32."""
        logits = logits.float() / self.temperature
        if self.top_k is not None:
            logits = top_k_filter(logits, self.top_k)
        if self.top_p is not None and self.top_p < 1.0:
            logits = top_p_filter(logits, self.top_p)
        return logits

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        probs = self.filter(logits).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
