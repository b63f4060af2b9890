"""The data processor and collator a ``data`` config names by ``_target_``, and the ``data.*`` keys
they read.

A data config (``conf/data/*.yaml``) names two classes and holds their options as flat keys::

    processor: {_target_: uer.preprocess.full_sentences.FullSentencesProcessor}  # corpus -> instances
    collator: {_target_: uer.data.masking.MaskedLm}                              # instances -> batches
    seq_length: 128
    mask_prob: 0.15

Each class receives the ``data.*`` keys named like its constructor parameters (a processor's
dataclass fields), so ``data.mask_prob=0.2`` reaches the collator and ``data.seq_length`` both; a
collator parameter named ``tokenizer`` receives the loaded `uer.data.tokenizer.Tokenizer` (not the
``data.tokenizer`` spec). A user adds an objective by writing a class and naming it in a YAML; it is
used only if its prefix is allowed (`uer.models.build.check_targets`: ``uer.`` and
``trainer.allowed_targets``), as for model parts.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import inspect
from collections.abc import Iterable

from hydra._internal.utils import _locate  # what hydra.utils.get_object wraps, without its error log line
from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError
from uer.models.build import DEFAULT_ALLOWED, check_targets

LOADER_KEYS = frozenset({"processor", "collator", "dataset", "batch_size", "eval_samples", "num_workers", "seed",
                         "evaluator"})
"""``data.*`` keys of the training loader itself: read by neither class (``seed`` also seeds the split;
``evaluator``, optional, names the class scoring the held-out rows during training, e.g. CLIP's
zero-shot accuracy: ``uer.train.contrastive_eval.ContrastiveEvaluator``)."""


def shipped_data_config(name: str, **overrides) -> DictConfig:
    """The shipped ``conf/data/<name>.yaml`` with ``overrides`` (``data.<key>`` values) merged in,
    unresolved (``${model.image_size}`` stays until a model is there).

    Raises:
        UerError: no such data config (the message lists them).
    """
    root = importlib.resources.files("uer.conf") / "data"
    path = root / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
        raise UerError(f"data={name}: no such data config; available: {', '.join(names)}")
    return OmegaConf.merge(OmegaConf.create(path.read_text(encoding="utf-8")), overrides)


def target_class(data_cfg, key: str, allowed: Iterable[str] = DEFAULT_ALLOWED) -> type:
    """The class named by ``data_cfg[key]._target_`` (``key``: "processor" or "collator").

    Raises:
        UerError: the node is missing or holds more than ``_target_`` (options are flat ``data.*``
            keys), or the class is outside the ``allowed`` prefixes or does not exist.
    """
    node = data_cfg.get(key)
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict) or "_target_" not in node:
        raise UerError(f"data.{key}: needs a _target_ naming a class (see conf/data/*.yaml), got {node!r}")
    extra = sorted(set(node) - {"_target_"})
    if extra:
        raise UerError(f"data.{key}.{extra[0]}: set options as flat keys (data.{extra[0]}); they reach the "
                       "class by parameter name")
    check_targets(node, allowed, f"data.{key}")
    return _locate(node["_target_"])


def parameters(cls: type) -> set[str]:
    """The ``data.*`` keys ``cls`` reads: its dataclass fields or named constructor parameters."""
    if dataclasses.is_dataclass(cls):
        return {field.name for field in dataclasses.fields(cls) if field.init}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds}


def check_keys(data_cfg, processor: type, collator: type) -> None:
    """Raise :class:`UerError` naming the first ``data.*`` key that neither class nor the loader
    reads (a typo), with the valid keys."""
    known = parameters(processor) | parameters(collator) | LOADER_KEYS
    unknown = sorted(set(data_cfg.keys()) - known)
    if unknown:
        raise UerError(f"unknown key data.{unknown[0]} for processor {processor.__name__} and collator "
                       f"{collator.__name__}; valid keys: {', '.join(sorted(known))}")


def make_collator(data_cfg, tokenizer, allowed: Iterable[str] = DEFAULT_ALLOWED):
    """Build the collator ``data_cfg.collator`` names: ``collate(rows, rngs) -> batch``
    (`uer.data.loader.Collate`), given the ``data.*`` keys named like its parameters and, if it has
    a ``tokenizer`` parameter, ``tokenizer``.

    Raises:
        UerError: a bad ``_target_`` (see `target_class`), or a value or tokenizer the collator
            rejects (its ValueError/TypeError, in one line).
    """
    cls = target_class(data_cfg, "collator", allowed)
    names = parameters(cls)
    kwargs = {name: data_cfg[name] for name in names - {"tokenizer"} if name in data_cfg}
    if "tokenizer" in names:
        kwargs["tokenizer"] = tokenizer
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UerError(f"data.collator ({cls.__name__}): {str(e).splitlines()[0]}") from None
