"""The lengths of T5 span corruption (Raffel et al. 2020, section 3.1.4): how many tokens and spans
are noise in a row, and how long a raw row must be for its corrupted form to fill a block. Plain
arithmetic without torch, so the preprocessing workers import it cheaply; the masking itself is
:mod:`uer.data.span_corruption`."""
from __future__ import annotations


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a row of ``length`` >= 2 tokens, as the T5 reference rounds them."""
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(min(num_noise, length - num_noise) / mean_noise_span_length), 1)
    return num_noise, num_spans


def raw_length(inputs_length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """The raw tokens per row so that the corrupted input (with sentinels and eos) has exactly
    ``inputs_length`` tokens, and the target length that goes with it (Hugging Face's
    ``compute_input_and_target_lengths``). Returns ``(raw tokens, target tokens)``."""

    def lengths(tokens: int) -> tuple[int, int]:
        noise, spans = noise_counts(tokens, noise_density, mean_noise_span_length)
        return tokens - noise + spans + 1, noise + spans + 1

    tokens = inputs_length
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    return tokens, lengths(tokens)[1]
