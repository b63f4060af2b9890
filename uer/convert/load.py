"""The one loader (DESIGN §6): any model directory, a uer checkpoint or a Hugging Face model
(converted on the fly, in memory), as ``(model, config, tokenizer)``. ``trainer.init_from``, the
fine-tuning recipes, ``uer-convert``, ``uer-generate``, ``uer-soup`` and ``examples/infer.py`` all
read checkpoints through :func:`load_pretrained`.

It lives in ``uer.convert`` because that is the lowest package allowed to import all it needs: the
model (``uer.models``: build, weights, config), the tokenizer (``uer.data``, above models) and the
Hugging Face import (this package). ``uer.generation``, ``uer.train``, the commands and the
examples sit above it.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig

from uer.config import resolve
from uer.convert.files import kind_of
from uer.convert.reader import read_hf
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.adapter_checkpoint import (
    ADAPTER_WEIGHTS,
    BASE_KEY,
    check_base,
    is_adapter_checkpoint,
    load_adapter_weights,
)
from uer.models.adapters import apply_adapters, base_config
from uer.models.build import DEFAULT_ALLOWED
from uer.models.model import Model
from uer.models.pretrained import load_config, load_model, model_differences


class Pretrained(NamedTuple):
    """What :func:`load_pretrained` returns."""

    model: Model
    """In eval mode, weights loaded strictly."""
    config: DictConfig
    """The checkpoint's whole config (``model:``, and what else the run recorded: ``data:``,
    ``task:``, ``convert:`` ...); for a Hugging Face directory ``model:`` and the ``convert:``
    record of :func:`uer.convert.reader.read_hf`."""
    tokenizer: Tokenizer | None
    """None when the directory has no tokenizer."""


def load_pretrained(path: str | Path, allowed_targets: Iterable[str] = (),
                    dtype: torch.dtype | None = torch.float32) -> Pretrained:
    """Load the model directory ``path``: a uer checkpoint (``config.yaml``) or a Hugging Face
    model (``config.json``), detected by :func:`uer.convert.files.kind_of`.

    A uer checkpoint's ``config.yaml`` is read as data within size and node limits, and refused if
    it holds an interpolation (:func:`uer.models.pretrained.load_config`); its model config is
    instantiated only if every ``_target_`` names a model part: an ``nn.Module`` class of uer's part
    packages, or under one of ``allowed_targets`` (``trainer.allowed_targets``;
    :func:`uer.models.registry.check_parts`, before anything is built). The rest of the config is
    returned as values, never built. A Hugging Face model is converted by its family's spec into a
    config uer composes itself, so nothing in its files names code (its config.json is read within
    the same limits). Loading never changes the global RNG. An adapter-only checkpoint
    (:mod:`uer.models.adapter_checkpoint`) loads its base and applies its LoRA weights (:func:`load_adapter`).

    Args:
        allowed_targets: prefixes of the user's model parts (``nn.Module`` classes) trusted besides uer's.
        dtype: the parameters' dtype; None keeps the stored one (what an exact conversion needs).

    Raises:
        UerError: ``path`` is neither kind of directory, or is a bad one (see
            :func:`uer.models.pretrained.load_model`, :func:`uer.convert.reader.read_hf`); one line that
            names the file and the problem.
    """
    path = Path(path)
    if kind_of(path) == "uer" and is_adapter_checkpoint(path):
        return load_adapter(path, allowed_targets, dtype)
    if kind_of(path) == "hf":
        model, config, tokenizer = read_hf(path)
        if dtype is not None:
            model.to(dtype)
        return Pretrained(model, config, tokenizer)
    try:
        model, config = load_model(path, DEFAULT_ALLOWED + tuple(allowed_targets), dtype)
    except UerError as e:  # e.g. a config.yaml cut short lacks a part: say which checkpoint
        raise e if str(path) in str(e) else UerError(f"checkpoint {path}: {e}") from None
    tokenizer = Tokenizer.load(path) if (path / "tokenizer.json").exists() else None
    return Pretrained(model, config, tokenizer)


def load_adapter(path: Path, allowed_targets: Iterable[str] = (), dtype: torch.dtype | None = torch.float32) -> Pretrained:
    """An adapter-only checkpoint: its base (``adapter_base.path``, a uer or Hugging Face directory,
    refused if its weights changed since training), with ``model.adapters`` applied and the LoRA
    weights loaded strictly; the checkpoint's config, and its tokenizer (else the base's).

    Raises:
        UerError: the base is missing or changed, has another model config, or the weights do not fit.
    """
    cfg = load_config(path)
    base = load_pretrained(check_base(cfg.get(BASE_KEY), f"checkpoint {path}"), allowed_targets, dtype)
    diffs = model_differences(resolve(base.config.model), base_config(resolve(cfg.model)))
    if diffs:
        raise UerError(f"checkpoint {path}: its base has another model config ({'; '.join(diffs[:3])})")
    with torch.random.fork_rng(devices=[]):
        model = apply_adapters(base.model, cfg.model.get("adapters"))
    model.to(next(iter(base.model.parameters())).dtype)
    load_adapter_weights(model, path / ADAPTER_WEIGHTS)
    tokenizer = Tokenizer.load(path) if (path / "tokenizer.json").exists() else base.tokenizer
    return Pretrained(model.eval(), cfg, tokenizer)
