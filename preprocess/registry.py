"""The processors by name, and the ``data.*`` config section turned into a processor's options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from omegaconf import DictConfig

from uer.errors import UerError
from uer.preprocess.causal_lm import CausalLmProcessor
from uer.preprocess.full_sentences import FullSentencesProcessor
from uer.preprocess.images import ImageProcessor
from uer.preprocess.parallel import ParallelProcessor
from uer.preprocess.prefix_lm import PrefixLmProcessor
from uer.preprocess.processor import Processor
from uer.preprocess.sentence_blocks import SentenceBlocksProcessor
from uer.preprocess.sentence_pair import NspProcessor, SopProcessor
from uer.preprocess.span_corruption import SpanCorruptionProcessor

PROCESSORS: dict[str, type[Processor]] = {
    "bert": NspProcessor,
    "albert": SopProcessor,
    "mlm": FullSentencesProcessor,
    "lm": CausalLmProcessor,
    "image": ImageProcessor,
    "t5": SpanCorruptionProcessor,
    "bart": SentenceBlocksProcessor,
    "gsg": SentenceBlocksProcessor,
    "mt": ParallelProcessor,
    "prefixlm": PrefixLmProcessor,
}
"""Processor name (``data.processor``) -> its options dataclass."""

TRAINING_KEYS = frozenset({
    "dataset", "batch_size", "eval_samples", "num_workers", "mask_prob", "image_size", "channels",
    "decoder_start", "mask_ratio", "poisson_lambda", "permute_ratio", "gap_ratio", "gap_selection",
})
"""``data.*`` keys read at training time (loader, collator), which preprocessing ignores."""


def options_from_config(cfg: Mapping | DictConfig, ignored: frozenset[str] = TRAINING_KEYS) -> Processor:
    """Build the options of processor ``cfg["processor"]`` from a ``data`` config section.

    Keys in ``ignored`` are skipped without being read (they may interpolate keys that only exist at
    training time). Raises UerError for an unknown processor, an unknown key (the message lists the
    valid keys), or an invalid value.
    """
    name = cfg.get("processor")
    if name not in PROCESSORS:
        raise UerError(f"data.processor: unknown processor {name!r}; valid: {', '.join(PROCESSORS)}")
    cls = PROCESSORS[name]
    fields = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(cfg.keys()) - fields - ignored)
    if unknown:
        valid = ", ".join(sorted(fields | ignored))
        raise UerError(f"unknown key data.{unknown[0]} for processor {name}; valid keys: {valid}")
    return cls(**{key: cfg[key] for key in cfg.keys() if key in fields})
