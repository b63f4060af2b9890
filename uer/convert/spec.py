"""The declarative vocabulary of a conversion spec (DESIGN §6): tensor rules with ``{i}`` layer
placeholders, transforms that know their inverse, config keys that map both ways, and the heads
(Hugging Face architectures) of a family. A family file (``bert.py`` ...) is data built from these;
:mod:`uer.convert.engine` and :mod:`uer.convert.configs` run it in either direction."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from uer.errors import UerError


class Transform:
    """A bijection between ``arity`` Hugging Face tensors and one uer tensor."""

    arity = 1

    def to_uer(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def bound(self, model: torch.nn.Module, name: str) -> Transform:
        """This transform for the uer parameter ``name`` of ``model`` (export): itself, unless the
        split depends on sizes only the model knows (grouped-query q/k/v)."""
        return self


class Identity(Transform):
    """The same tensor on both sides."""

    def to_uer(self, tensors):
        return tensors[0]

    def to_hf(self, tensor):
        return [tensor]


class Transpose(Transform):
    """GPT-2's ``Conv1D`` stores a linear map as (in, out); ``nn.Linear`` as (out, in)."""

    def to_uer(self, tensors):
        return tensors[0].t().contiguous()

    def to_hf(self, tensor):
        return [tensor.t().contiguous()]


class Concat(Transform):
    """Separate query/key/value projections <-> the fused ``qkv`` rows [q; k; v] (dim 0) of
    :class:`uer.layers.attention.MultiHeadAttention`; weights (3D, D) and biases (3D,)."""

    def __init__(self, parts: int = 3):
        self.arity = parts

    def to_uer(self, tensors):
        return torch.cat(tensors, dim=0)

    def to_hf(self, tensor):
        if tensor.shape[0] % self.arity:
            raise UerError(f"cannot split a tensor of shape {tuple(tensor.shape)} into {self.arity} equal parts")
        return [t.contiguous() for t in tensor.chunk(self.arity, dim=0)]


class Row(Transform):
    """A (1, N) row on the Hugging Face side, an (N,) vector on uer's (BART's ``final_logits_bias``
    buffer <-> the LM head's output bias)."""

    def to_uer(self, tensors):
        return tensors[0].squeeze(0)

    def to_hf(self, tensor):
        return [tensor.unsqueeze(0)]


class Lead(Transform):
    """``dims`` leading singleton dimensions on the uer side only: CLIP's class embedding (D,) and
    position table (N, D) <-> :class:`uer.embeddings.PatchEmbedding`'s ``cls`` (1, 1, D) and
    ``position`` (1, N, D)."""

    def __init__(self, dims: int):
        self.dims = dims

    def to_uer(self, tensors):
        return tensors[0].reshape((1,) * self.dims + tuple(tensors[0].shape))

    def to_hf(self, tensor):
        if tensor.shape[:self.dims] != (1,) * self.dims:
            raise UerError(f"expected {self.dims} leading singleton dimensions, got shape {tuple(tensor.shape)}")
        return [tensor.reshape(tensor.shape[self.dims:])]


IDENTITY, TRANSPOSE, QKV, KV, ROW = Identity(), Transpose(), Concat(3), Concat(2), Row()


@dataclass(frozen=True)
class Rule:
    """Hugging Face tensor name(s) <-> one uer parameter name. Names may hold ``{i}``, the encoder
    layer index (one layer when ALBERT shares them), ``{j}``, the decoder layer index, or ``{f}`` /
    ``{s}``, the layer index of a two-tower model's first / second encoder. An ``optional`` rule
    covers a tensor only some configs have (BEiT's mask token, relative position tables): it applies
    when its tensors are there (import) or its parameter is (export), and the model built from the
    config must still be covered exactly, so a tensor the config contradicts is still an error."""

    hf: tuple[str, ...]
    uer: str
    transform: Transform = IDENTITY
    optional: bool = False

    def __post_init__(self):
        if len(self.hf) != self.transform.arity:
            raise ValueError(f"rule for {self.uer}: {len(self.hf)} names for a transform of arity "
                             f"{self.transform.arity}")


def params(hf: str, uer: str, weight: Transform = IDENTITY, bias: Transform = IDENTITY) -> tuple[Rule, ...]:
    """Rules for the ``weight`` and ``bias`` of one linear map or norm."""
    return (Rule((f"{hf}.weight",), f"{uer}.weight", weight), Rule((f"{hf}.bias",), f"{uer}.bias", bias))


def fused_qkv(q: str, k: str, v: str, uer: str, bias: bool = True) -> tuple[Rule, ...]:
    """Rules joining three projections (module paths ``q``, ``k``, ``v``) into ``uer``'s fused qkv
    (weights, and biases unless ``bias`` is False)."""
    kinds = ("weight", "bias") if bias else ("weight",)
    return tuple(Rule((f"{q}.{p}", f"{k}.{p}", f"{v}.{p}"), f"{uer}.{p}", QKV) for p in kinds)


def cross_attention(q: str, k: str, v: str, out: str, uer: str, bias: bool = True) -> tuple[Rule, ...]:
    """Rules of a cross-attention block (module paths of the q, k, v and output projections) onto
    uer's ``q``, fused ``kv`` (rows [k; v]) and ``out`` under ``uer``."""
    kinds = ("weight", "bias") if bias else ("weight",)
    return tuple(rule for p in kinds for rule in (
        Rule((f"{q}.{p}",), f"{uer}.q.{p}"), Rule((f"{k}.{p}", f"{v}.{p}"), f"{uer}.kv.{p}", KV),
        Rule((f"{out}.{p}",), f"{uer}.out.{p}")))


def _same(value, _config):
    return value


@dataclass(frozen=True)
class ConfigKey:
    """A Hugging Face config attribute <-> a key of the uer model config (dotted, under ``model.``).

    ``to_uer(hf_value, hf_config)`` and ``to_hf(uer_value, uer_model_config)`` convert values when
    the two sides do not store the same number (both identity by default); ``to_uer`` may return a
    dict (a part's config, e.g. BEiT's relative position bias). ``heads``: the architectures the key
    applies to on import (all when empty); on export it is read when the uer key exists.
    """

    hf: str
    uer: str
    to_uer: Callable[[Any, Any], Any] = _same
    to_hf: Callable[[Any, Any], Any] = _same
    heads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Head:
    """One Hugging Face architecture of a family and how it sits on a uer model.

    Args:
        architecture: the class name (``BertForPreTraining``), as in config.json's ``architectures``.
        auto_class: the ``transformers`` Auto class that loads it.
        target: the uer target config (``conf/model/target/<target>.yaml``) replacing the preset's,
            or None to keep the preset's.
        overrides: further uer config overrides this head needs.
        rules: tensors of the head, HF names written with the family's base-model prefix.
        tied: HF tensor -> the HF tensor it is tied to (not stored; checked equal on import).
        uer_only: prefixes of uer parameters the architecture does not have. Import leaves them at
            their seeded initialization and records them as such; export drops them.
        base_model: the HF names carry no base-model prefix (``BertModel``, ``ViTModel``).
        unused: HF tensors found in published checkpoints of this architecture that its
            ``transformers`` class does not load (RoBERTa's pooler): dropped on import and recorded.
    """

    architecture: str
    auto_class: str
    target: str | None = None
    overrides: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    tied: dict[str, str] = field(default_factory=dict)
    uer_only: tuple[str, ...] = ()
    base_model: bool = False
    unused: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A Hugging Face ``model_type`` and the uer presets it corresponds to.

    Args:
        model_type: config.json's ``model_type``.
        presets: uer presets of this family; the first is the default on import.
        prefix: the base-model prefix of HF tensor names (``bert.``).
        config: the config keys both sides have.
        fixed: HF config attributes that change the computation in ways uer does not model, with
            the values uer supports (the first is assumed when the attribute is absent).
        overrides: uer config overrides every model of the family needs.
        body: tensor rules of the base model (HF names with ``prefix``).
        heads: supported architectures; on export the first that fits the uer target is the default.
        ignored: regexes of HF tensors that are buffers, not weights (dropped on import).
        max_positions: uer model config -> the tokenizer's ``model_max_length``, or None.
        check: extra validation of the HF config; returns a problem or None.
        generation: write a ``generation_config.json`` (causal LMs).
        input_names: what the exported tokenizer returns (``token_type_ids`` for segment models).
        token_values: ``(uer model config, tokenizer or None) -> {HF key: value}``: config values an
            export takes from the tokenizer where the model config leaves them None and the imported
            config.json did not record them (CLIP's ``text_config`` token ids).
        image_processor: uer model config -> the ``preprocessor_config.json`` an export writes when
            the checkpoint brought none, or None for no such file.
        tokenizer_class: the family's ``transformers`` tokenizer class (``BertTokenizerFast``), named
            in the exported ``tokenizer_config.json`` when it encodes as the saved tokenizer does
            (:func:`uer.convert.files.name_tokenizer_class`); None: the generic class.

    HF config keys may be dotted (``text_config.hidden_size``) to reach into a sub-config.
    """

    model_type: str
    presets: tuple[str, ...]
    prefix: str
    config: tuple[ConfigKey, ...]
    fixed: dict[str, tuple]
    body: tuple[Rule, ...]
    heads: tuple[Head, ...]
    overrides: tuple[str, ...] = ()
    ignored: tuple[str, ...] = (r"(^|\.)position_ids$", r"(^|\.)token_type_ids$")
    max_positions: Callable[[Any], int | None] = lambda model_cfg: None
    check: Callable[[Any], str | None] = lambda hf_config: None
    generation: bool = False
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    token_values: Callable[[Any, Any], dict] = lambda model_cfg, tokenizer: {}
    image_processor: Callable[[Any], dict] | None = None
    tokenizer_class: str | None = None

    def head(self, architecture: str) -> Head:
        """The head called ``architecture``; UerError listing the supported ones otherwise."""
        for head in self.heads:
            if head.architecture == architecture:
                return head
        names = ", ".join(h.architecture for h in self.heads)
        raise UerError(f"architecture {architecture} is not supported for model_type {self.model_type}; "
                       f"supported: {names}")
