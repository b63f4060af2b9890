"""The collators of the encoder-decoder and prefix-LM data configs (``data=t5|bart|gsg|mt|prefixlm``):
the denoising and sequence-to-sequence collators with their special ids taken from the tokenizer and
their options (``data.*`` keys of the same names) checked.

``decoder_start`` (pad | eos | bos) is the first decoder input: T5 and PEGASUS start with pad, BART
and fairseq MT with eos; each class's default is its paper's.
"""
from __future__ import annotations

from uer.data.gap_sentences import SELECTIONS, GapSentencesCollator
from uer.data.infilling import InfillingCollator
from uer.data.prefix_lm import PrefixLmCollator
from uer.data.seq2seq import Seq2SeqCollator, role_id
from uer.data.span_corruption import SpanCorruptionCollator, noise_counts, raw_length
from uer.errors import UerError


def _fraction(key: str, value, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UerError(f"data.{key}={value}: must be a number in [{low}, {high}]")
    return float(value)


def _ids(tokenizer, objective: str, *roles: str) -> list[int]:
    return [role_id(tokenizer, role, f"data.tokenizer ({objective})") for role in roles]


def _mask_id(tokenizer, objective: str) -> int:
    if tokenizer.mask_token_id is None:
        raise UerError(f"data.tokenizer: {objective} needs a mask token")
    return tokenizer.mask_token_id


class SpanCorruption(SpanCorruptionCollator):
    """The collator of ``data=t5`` (Raffel et al. 2020): `SpanCorruptionCollator` with the
    tokenizer's sentinels (``sentinel_token``: a format such as ``"[unused{}]"``, None: ``<extra_id_N>``
    or ``extraN``), pad and eos.

    Raises:
        UerError: fewer sentinels than the noise spans of a ``seq_length`` block need, or a missing
            special token.
    """

    def __init__(self, tokenizer, seq_length: int, noise_density: float = 0.15,
                 mean_noise_span_length: float = 3.0, sentinel_token: str | None = None, decoder_start: str = "pad"):
        sentinels = tokenizer.sentinel_ids(sentinel_token)
        spans = noise_counts(raw_length(seq_length, noise_density, mean_noise_span_length)[0], noise_density,
                             mean_noise_span_length)[1]
        if len(sentinels) < spans:
            raise UerError(f"data.sentinel_token={sentinel_token}: the tokenizer has {len(sentinels)} sentinel "
                           f"tokens, and data.seq_length={seq_length} needs {spans}")
        pad_id, eos_id = _ids(tokenizer, "t5", "pad", "eos")
        super().__init__(sentinels, pad_id, eos_id, role_id(tokenizer, decoder_start), noise_density,
                         mean_noise_span_length)


class TextInfilling(InfillingCollator):
    """The collator of ``data=bart`` (Lewis et al. 2020): `InfillingCollator` with the tokenizer's
    pad, mask, bos and eos; ``mask_ratio`` (0.3), ``poisson_lambda`` (3) and ``permute_ratio`` (1.0)
    are BART's.

    Raises:
        UerError: an option out of range or a missing special token.
    """

    def __init__(self, tokenizer, mask_ratio: float = 0.3, poisson_lambda: float = 3.0, permute_ratio: float = 1.0,
                 decoder_start: str = "eos"):
        pad_id, bos_id, eos_id = _ids(tokenizer, "bart", "pad", "bos", "eos")
        super().__init__(pad_id, _mask_id(tokenizer, "bart"), bos_id, eos_id, role_id(tokenizer, decoder_start),
                         _fraction("mask_ratio", mask_ratio), _fraction("poisson_lambda", poisson_lambda, 1e-3, 1e3),
                         _fraction("permute_ratio", permute_ratio))


class GapSentences(GapSentencesCollator):
    """The collator of ``data=gsg`` (PEGASUS, Zhang et al. 2020): `GapSentencesCollator` with the
    tokenizer's pad, mask (the mask-sentence token) and eos; ``gap_ratio`` (0.3) of the sentences
    chosen by ``gap_selection`` (principal | lead | random).

    Raises:
        UerError: an option out of range or unknown, or a missing special token.
    """

    def __init__(self, tokenizer, gap_ratio: float = 0.3, gap_selection: str = "principal",
                 decoder_start: str = "pad"):
        if gap_selection not in SELECTIONS:
            raise UerError(f"data.gap_selection={gap_selection}: unknown; valid: {', '.join(SELECTIONS)}")
        pad_id, eos_id = _ids(tokenizer, "gsg", "pad", "eos")
        super().__init__(pad_id, _mask_id(tokenizer, "gsg"), eos_id, role_id(tokenizer, decoder_start),
                         _fraction("gap_ratio", gap_ratio, 1e-6), gap_selection)


class Translation(Seq2SeqCollator):
    """The collator of ``data=mt``: `Seq2SeqCollator` with the source pad of ``tokenizer`` and the
    target pad and decoder start of ``tokenizer.target``.

    Raises:
        UerError: the tokenizer has no target side (``data.tgt_tokenizer``) or a missing special token.
    """

    def __init__(self, tokenizer, decoder_start: str = "eos"):
        target = tokenizer.target
        if target is None:
            raise UerError("data.tokenizer: mt needs a target tokenizer (data.tgt_tokenizer); this one has none")
        super().__init__(_ids(tokenizer, "mt", "pad")[0], _ids(target, "mt", "pad")[0],
                         role_id(target, decoder_start))


class PrefixLm(PrefixLmCollator):
    """The collator of ``data=prefixlm``: `PrefixLmCollator` padding with the tokenizer's pad.

    Raises:
        UerError: the tokenizer has no pad token.
    """

    def __init__(self, tokenizer):
        super().__init__(*_ids(tokenizer, "prefixlm", "pad"))
