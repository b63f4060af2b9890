"""Reading a Hugging Face model directory as uer objects, in memory (:func:`read_hf`): what
``uer-convert`` writes as a checkpoint and :func:`uer.convert.load_pretrained` returns on the fly.

What a uer checkpoint made by import holds: ``model.safetensors``; ``config.yaml`` whose ``model:``
section is exactly what ``uer-pretrain +model=<preset> <sizes ...>`` builds, plus a ``convert:``
section recording the source, its architecture, the uer parameters the architecture lacks (left at
their seeded initialization: ``initialized``), the source tensors the architecture does not use
(``unused``, e.g. the pooler in RoBERTa's MLM checkpoints, which transformers ignores too) and the
config.json entries uer does not model (``hf_config``: label names, token ids, ``use_cache`` ...),
which an export restores; and the tokenizer. Tensors keep their dtype, so HF -> uer -> HF and
uer -> HF -> uer are bit-identical (for encoder-only architectures, less the heads they lack).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from uer.convert import engine
from uer.convert.configs import carried, read_hf_config, uer_model_config
from uer.convert.families import FAMILIES
from uer.convert.files import read_hf_tokenizer, read_hf_weights
from uer.convert.spec import Family
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.build import build_model
from uer.models.model import Model

log = logging.getLogger("uer")
TASK_TARGETS = ("uer.targets.seq_cls.SeqClsTarget", "uer.targets.token_cls.TokenClsTarget")
"""Fine-tuning targets whose ``num_labels`` is set in the uer target config and carried by
config.json's ``num_labels``/``id2label``. A config composed from a Hugging Face config holds the
target yaml's default (transformers' default, 2): import sets the real count, export compares
configs at that default and writes the count through ``id2label``."""
HF_DEFAULT_LABELS = 2


def with_num_labels(model_cfg, num_labels: int):
    """A copy of ``model_cfg`` whose task targets (:data:`TASK_TARGETS`) have ``num_labels``."""
    out = OmegaConf.create(OmegaConf.to_container(model_cfg))
    for part in out.target.values():
        if OmegaConf.is_dict(part) and part.get("_target_") in TASK_TARGETS:
            part.num_labels = num_labels
    return out


def read_hf(src: str | Path, architecture: str | None = None) -> tuple[Model, DictConfig, Tokenizer | None]:
    """The Hugging Face model in ``src`` as uer objects, in memory: ``(model, checkpoint config,
    tokenizer or None)``. The model keeps the source's dtype (when it has one floating dtype); the
    config holds ``model:`` and the ``convert:`` record (see the module docstring).

    Raises:
        UerError: unsupported model type or architecture, a config feature uer does not model,
            missing/corrupt weights, weights that do not match the architecture or contradict the
            config's sizes, or an unreadable tokenizer.
    """
    src = Path(src)
    config, raw = read_hf_config(src)
    return hf_model(config, raw, read_hf_weights(src), read_hf_tokenizer(src), architecture or _declared(raw, src),
                    others=architecture is None, where=str(src), source=str(src.resolve()))


def hf_model(config, raw: dict, tensors: dict, tokenizer, architecture: str, others: bool, where: str,
             source: str) -> tuple[Model, DictConfig, Tokenizer | None]:
    """What :func:`read_hf` returns, from a Hugging Face model already in memory: its config object
    and config.json dict, its tensors (by Hugging Face name) and tokenizer, read as ``architecture``
    (or, with ``others``, the first head of the family the tensors fit); ``where`` names the input
    in messages, ``source`` is recorded under ``convert.source``.

    Raises:
        UerError: as :func:`read_hf`.
    """
    family = FAMILIES[raw["model_type"]]
    head, model_cfg, tensors, unused = _read_as(family, config, tensors, architecture, others=others, where=where)
    model = _seeded_model(model_cfg)
    state, fresh = engine.to_uer(family, head, tensors, model, engine.num_layers(model_cfg), where)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    loaded = model.load_state_dict(state, strict=False)  # the initialized heads are not in state
    left = set(loaded.missing_keys) - set(fresh) - (set(model.state_dict()) - set(engine.uer_tensors(model)))
    if left or loaded.unexpected_keys:
        raise UerError(f"{where}: conversion left {sorted(left)[:5]} unset and {loaded.unexpected_keys[:5]} unused")
    record = {"source": source, "architecture": head.architecture, "initialized": fresh,
              "unused": unused, "hf_config": carried(family, raw)}
    notes = [f"not in the source, initialized: {engine.listing(fresh)}"] if fresh else []
    notes += [f"not used by {head.architecture}, left out: {engine.listing(unused)}"] if unused else []
    log.info("read %s as %s%s", where, head.architecture, "".join(f"; {n}" for n in notes))
    return model.eval(), OmegaConf.create({"model": OmegaConf.to_container(model_cfg), "convert": record}), tokenizer


def _read_as(family: Family, config, tensors: dict, declared: str, others: bool, where: str):
    """``(head, uer model config, tensors, unused names)`` for reading ``tensors`` as ``declared``,
    or, when ``others`` and they do not fit it, as the first other head of the family that they fit
    (config.json's ``architectures`` is a label; bert-base-uncased says BertForMaskedLM but ships
    the NSP head too, which BertForPreTraining keeps).

    Raises:
        UerError: the weights fit no head (the message is the one for ``declared``).
    """
    first = family.head(declared)
    heads = [first] + ([h for h in family.heads if h is not first] if others else [])
    problem = None
    for head in heads:
        model_cfg = with_num_labels(uer_model_config(family, head, config), config.num_labels)
        try:
            matched, unused = engine.match_hf(family, head, tensors, engine.num_layers(model_cfg), where)
        except UerError as e:
            problem = problem or e
            continue
        if head is not first:
            log.info("%s: config.json names %s but the weights are a %s; converting them as such", where, declared,
                     head.architecture)
        return head, model_cfg, matched, unused
    raise problem


def _declared(raw: dict, src: Path) -> str:
    names = raw.get("architectures") or []
    if len(names) != 1:
        raise UerError(f"{src / 'config.json'}: architectures is {names or 'absent'}; name the one to read "
                       "with --arch")
    return names[0]


def _seeded_model(model_cfg):
    """The uer model of ``model_cfg``, initialized from seed 0 without touching the global RNG (the
    parameters a source lacks keep these values, so a conversion is deterministic)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(model_cfg)
