"""Which collator serves the encoder-decoder and prefix-LM processors (t5, bart, gsg, mt, prefixlm),
built from the ``data`` config section and the tokenizer."""
from __future__ import annotations

from omegaconf import DictConfig

from uer.data.gap_sentences import SELECTIONS, GapSentencesCollator
from uer.data.infilling import InfillingCollator
from uer.data.prefix_lm import PrefixLmCollator
from uer.data.seq2seq import Seq2SeqCollator, role_id
from uer.data.span_corruption import SpanCorruptionCollator, noise_counts, raw_length
from uer.errors import UerError

SEQ2SEQ = ("t5", "bart", "gsg", "mt", "prefixlm")
DECODER_START = {"t5": "pad", "bart": "eos", "gsg": "pad", "mt": "eos"}
"""Default ``data.decoder_start`` per processor: T5 and PEGASUS start with pad, BART and fairseq MT with eos."""


def _fraction(data_cfg: DictConfig, key: str, default: float, low: float = 0.0, high: float = 1.0) -> float:
    value = data_cfg.get(key, default)
    if not isinstance(value, (int, float)) or not low <= value <= high:
        raise UerError(f"data.{key}={value}: must be a number in [{low}, {high}]")
    return float(value)


def _ids(tokenizer, name: str, *roles: str) -> list[int]:
    return [role_id(tokenizer, role, f"data.tokenizer (processor {name})") for role in roles]


def make_seq2seq_collator(data_cfg: DictConfig, tokenizer):
    """The collator for processor ``data_cfg.processor`` (one of `SEQ2SEQ`).

    Keys read: ``decoder_start`` (pad | eos | bos; default per `DECODER_START`), and per processor
    t5: ``sentinel_token``, ``noise_density``, ``mean_noise_span_length``, ``seq_length``;
    bart: ``mask_ratio`` (0.3), ``poisson_lambda`` (3), ``permute_ratio`` (1.0);
    gsg: ``gap_ratio`` (0.3), ``gap_selection`` (principal | lead | random). ``mt`` takes the target
    side's ids from ``tokenizer.target``.

    Raises:
        UerError: a bad value, a tokenizer without the special or sentinel tokens the objective needs.
    """
    name = data_cfg.processor
    if name == "prefixlm":
        return PrefixLmCollator(*_ids(tokenizer, name, "pad"))
    target = tokenizer.target if name == "mt" else tokenizer
    if target is None:
        raise UerError(f"data.tokenizer={data_cfg.get('tokenizer')}: processor mt needs a target tokenizer "
                       "(data.tgt_tokenizer); this one has none")
    start = role_id(target, data_cfg.get("decoder_start") or DECODER_START[name])
    pad_id, eos_id = _ids(tokenizer, name, "pad", "eos")
    if name == "mt":
        return Seq2SeqCollator(pad_id, _ids(target, name, "pad")[0], start)
    mask_id = tokenizer.mask_token_id
    if name in ("bart", "gsg") and mask_id is None:
        raise UerError(f"data.tokenizer={data_cfg.get('tokenizer')}: processor {name} needs a mask token")
    if name == "bart":
        return InfillingCollator(pad_id, mask_id, _ids(tokenizer, name, "bos")[0], eos_id, start,
                                 _fraction(data_cfg, "mask_ratio", 0.3),
                                 _fraction(data_cfg, "poisson_lambda", 3.0, 1e-3, 1e3),
                                 _fraction(data_cfg, "permute_ratio", 1.0))
    if name == "gsg":
        selection = data_cfg.get("gap_selection", "principal")
        if selection not in SELECTIONS:
            raise UerError(f"data.gap_selection={selection}: unknown; valid: {', '.join(SELECTIONS)}")
        return GapSentencesCollator(pad_id, mask_id, eos_id, start, _fraction(data_cfg, "gap_ratio", 0.3, 1e-6),
                                    selection)
    sentinels = tokenizer.sentinel_ids(data_cfg.get("sentinel_token"))
    density, mean = data_cfg.get("noise_density", 0.15), data_cfg.get("mean_noise_span_length", 3.0)
    spans = noise_counts(raw_length(data_cfg.seq_length, density, mean)[0], density, mean)[1]
    if len(sentinels) < spans:
        raise UerError(f"data.sentinel_token={data_cfg.get('sentinel_token')}: the tokenizer has {len(sentinels)} "
                       f"sentinel tokens, and data.seq_length={data_cfg.seq_length} needs {spans}")
    return SpanCorruptionCollator(sentinels, pad_id, eos_id, start, density, mean)
