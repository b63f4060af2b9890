"""Configs both ways: a Hugging Face config -> the uer model config that ``uer-pretrain
+model=<preset> ...`` builds, and a uer model config -> the Hugging Face config whose import gives
it back exactly (anything else is refused, so every export round-trips)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from uer.config import compose_config, presets, resolve
from uer.convert.engine import listing
from uer.convert.families import FAMILIES, family_of
from uer.convert.spec import Family, Head
from uer.errors import UerError
from uer.models.pretrained import model_differences
from uer.models.untrusted import load_json

UER_KEY = "uer_"
"""Prefix of the config.json entries only uer reads; written only when set."""
PRESET_KEY = "uer_preset"
"""config.json key naming the uer preset of an exported model, written when it is not the family's
default (``bert_tiny``), so that the round trip restores ``model.name``."""
TOKEN_IDS = {"pad_token_id": "pad", "bos_token_id": "bos", "eos_token_id": "eos"}
_ABSENT = object()
NOT_CARRIED = ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype", PRESET_KEY)
TRAINING_ONLY = ("gradient_checkpointing", "weights", "class_weights", "label_field", "name")
"""uer config keys that do not change the function a model computes; an export ignores them."""


def hf_get(config, key: str, default=None):
    """The HF config attribute ``key`` of ``config`` (a config object or its dict); a dotted key
    (``text_config.hidden_size``) reaches into a sub-config. ``default`` when any step is absent."""
    for name in key.split("."):
        config = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
    return config


def nested(values: dict) -> dict:
    """Dotted keys as nested dicts: ``{"text_config.hidden_size": 36}`` -> ``{"text_config": {"hidden_size": 36}}``."""
    out: dict = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


def merged(base: dict, over: dict) -> dict:
    """``base`` updated with ``over``; a sub-config both have is merged key by key."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def read_hf_config(src: Path):
    """``(config object, raw config.json dict)`` of a Hugging Face model directory.

    Raises:
        UerError: missing, unreadable or invalid config.json, or an unknown ``model_type``.
    """
    path = Path(src) / "config.json"
    raw = load_json(path)  # within size and node limits, no interpolation-like strings
    return hf_config_from(raw, str(path)), raw


def hf_config_from(raw: dict, where: str):
    """The transformers config object of the config.json dict ``raw`` (read from ``where``).

    Raises:
        UerError: no or an unknown ``model_type``, or values transformers refuses.
    """
    from transformers import AutoConfig  # lazy: transformers takes seconds to import; only conversions need it

    if "model_type" not in raw:
        raise UerError(f"{where}: no model_type, so not a Hugging Face model config")
    family_of(raw["model_type"], where)
    try:
        return AutoConfig.for_model(**raw)
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError/TypeError/KeyError ...
        raise UerError(f"{where}: invalid config ({str(e).splitlines()[0]})") from None


def overrides_for(family: Family, head: Head, config, preset: str) -> list[str]:
    """The ``compose_config`` arguments that build the uer twin of ``config`` with ``head``.

    Raises:
        UerError: ``config`` uses a feature uer does not model (``family.fixed``, ``family.check``).
    """
    for key, allowed in family.fixed.items():
        value = hf_get(config, key, allowed[0])
        if value not in allowed:
            raise UerError(f"{family.model_type} config with {key}={value!r} has no uer equivalent "
                           f"(supported: {', '.join(map(repr, allowed))})")
    problem = family.check(config)
    if problem:
        raise UerError(f"{family.model_type} config with {problem} has no uer equivalent")
    args = [f"+model={preset}"] + ([f"model/target={head.target}"] if head.target else [])
    for key in family.config:
        if not key.heads or head.architecture in key.heads:
            args.append(f"model.{key.uer}={override_value(key.to_uer(hf_get(config, key.hf), config))}")
    return args + list(family.overrides) + list(head.overrides)


def override_value(value) -> str:
    """``value`` as a Hydra override value: JSON, a dict written as Hydra's ``{key: value}`` (its
    grammar takes no quoted keys)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {override_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def uer_model_config(family: Family, head: Head, config, preset: str | None = None) -> DictConfig:
    """The resolved uer model config of an HF ``config`` read as ``head``."""
    name = getattr(config, PRESET_KEY, None)
    preset = preset or (name if name in family.presets else family.presets[0])
    return resolve(compose_config(overrides_for(family, head, config, preset))).model


def carried(family: Family, raw: dict) -> dict:
    """The entries of a config.json that uer does not model (label names, ``use_cache`` ...): kept
    in the uer checkpoint so an export restores them. Sub-configs are kept less their mapped keys."""
    return _without(raw, {k.hf for k in family.config} | set(NOT_CARRIED))


def _without(raw: dict, keys: set[str], prefix: str = "") -> dict:
    """``raw`` less the dotted ``keys`` (relative to ``prefix``), at any depth."""
    out = {}
    for name, value in raw.items():
        path = prefix + name
        if path not in keys:
            inner = isinstance(value, dict) and any(k.startswith(path + ".") for k in keys)
            out[name] = _without(value, keys, path + ".") if inner else value
    return out


def hf_values(family: Family, model_cfg: DictConfig) -> dict:
    """HF config values of the keys both sides have (dotted keys for sub-configs, see :func:`nested`),
    plus the preset name when not the default."""
    keys = [k for k in family.config if not k.heads or OmegaConf.select(model_cfg, k.uer, default=_ABSENT) is not _ABSENT]
    values = {k.hf: k.to_hf(OmegaConf.select(model_cfg, k.uer), model_cfg) for k in keys}
    values = {k: v for k, v in values.items() if v is not None or not k.startswith(UER_KEY)}
    if model_cfg.get("name") in family.presets[1:]:
        values[PRESET_KEY] = model_cfg.name
    return values


def hf_config_for(family: Family, head: Head, model_cfg: DictConfig, extras: dict, tokenizer, dtype):
    """The HF config object exporting ``model_cfg`` as ``head``.

    Token ids come from ``extras`` (the imported config.json), else from the tokenizer's roles (None
    for a role it lacks or without a tokenizer), for the families whose config has them; then
    ``family.token_values`` fill the values the model config leaves None.

    Raises:
        UerError: a mapped value contradicts the tokenizer (RoBERTa's pad id), or the config does not
            round-trip (it holds settings ``head`` cannot express; the message lists them).
    """
    from transformers import AutoConfig  # lazy: transformers takes seconds to import; only conversions need it

    values = hf_values(family, model_cfg)
    defined = AutoConfig.for_model(family.model_type).to_dict()
    extras = dict(extras)
    if "num_labels" in values and len(extras.get("id2label") or {}) != values["num_labels"]:
        extras.pop("id2label", None), extras.pop("label2id", None)
    for key, role in TOKEN_IDS.items():
        token_id = getattr(tokenizer, f"{role}_token_id", None) if tokenizer is not None else None
        stored = hf_get(extras, key, _ABSENT) is not _ABSENT
        if key in values:
            if not stored and token_id is not None and token_id != values[key]:
                raise UerError(f"{family.model_type} needs {key}={values[key]} (from the model config) but the "
                               f"tokenizer's {role} token has id {token_id}")
        elif not stored and hf_get(defined, key, _ABSENT) is not _ABSENT:
            values[key] = token_id  # not the class default (GPT-2's 50256): this vocabulary's id, or none
    for key, value in family.token_values(model_cfg, tokenizer).items():
        if values.get(key) is None and hf_get(extras, key, _ABSENT) is _ABSENT:
            values[key] = value
    config = AutoConfig.for_model(family.model_type, **merged(extras, nested(values)))
    config.architectures = [head.architecture]
    config.dtype = dtype
    diffs = differences(model_cfg, uer_model_config(family, head, config))
    if diffs:
        raise UerError(f"the uer model config has settings {head.architecture} cannot express: {listing(diffs, 3)}")
    return config


def _without_token_ids(values: dict) -> dict:
    """``values`` with every token id not given set to None, in the config and each sub-config: a
    probe config has no tokenizer, and the class defaults (GPT-2's 50256, CLIP's 49406) would not
    fit its vocabulary."""
    subs = {k: {**dict.fromkeys(TOKEN_IDS), **v} for k, v in values.items()
            if isinstance(v, dict) and k.endswith("_config")}  # not a dict-valued key (rope_parameters)
    return {**dict.fromkeys(TOKEN_IDS), **values, **subs}


def differences(a: DictConfig, b: DictConfig) -> list[str]:
    """Differing keys of two resolved model configs, training-only keys left out."""
    return [d for d in model_differences(a, b)
            if not set(d.split(":")[0].split(".")) & set(TRAINING_ONLY)]


def export_head(model_cfg: DictConfig, architecture: str | None, recorded: str | None) -> tuple[Family, Head]:
    """The family and head to export ``model_cfg`` as: ``architecture`` if given, else the head it
    was imported from (``recorded``) if that still fits, else the first head of the family whose
    import gives the same config.

    Raises:
        UerError: a uer preset that no family has (``transformer_base``, ``lstm`` ...), or no family or
            head fits; the message says what differs for the closest one.
    """
    from transformers import AutoConfig  # lazy: transformers takes seconds to import; only conversions need it

    name = model_cfg.get("name")
    families = [f for f in FAMILIES.values() if name in f.presets]
    if not families and name in presets():  # a uer preset no Hugging Face family has (not "closest BERT")
        exported = "; ".join(f"{f.model_type}: {', '.join(f.presets)}" for f in FAMILIES.values())
        raise UerError(f"model {name} has no Hugging Face family to export to; uer-convert exports the presets "
                       f"of these families: {exported}")
    families = families or list(FAMILIES.values())  # a renamed model: whichever family fits
    heads = [(f, h) for f in families for h in f.heads if architecture in (None, h.architecture)]
    if architecture and not heads:
        supported = ", ".join(h.architecture for f in families for h in f.heads)
        raise UerError(f"architecture {architecture} is not supported for this model; supported: {supported}")
    best = None
    for family, head in sorted(heads, key=lambda fh: fh[1].architecture != recorded):
        try:
            values = hf_values(family, model_cfg)
            probe = AutoConfig.for_model(family.model_type, **_without_token_ids(nested(values)))
            diffs = differences(model_cfg, uer_model_config(family, head, probe))
        except Exception as e:  # noqa: BLE001 - a family whose keys this config lacks simply does not fit
            diffs = [str(e).splitlines()[0] if str(e) else type(e).__name__]
        if not diffs:
            return family, head
        if best is None or len(diffs) < len(best[1]):
            best = (head, diffs)
    raise UerError(f"no supported Hugging Face architecture fits this uer model; closest {best[0].architecture} "
                   f"differs in {listing(best[1], 3)}")

