"""``model.adapters``: LoRA (Hu et al. 2021) on a built model, chosen by module name; the base frozen.

::

    model:
      adapters:
        lora: {r: 8, alpha: 16, dropout: 0.05, target: [q, v], rslora: false}

The config is data: nothing in it names code, and it only ever wraps uer's ``nn.Linear`` layers in
:class:`uer.layers.lora.LoRALinear`. ``target`` is ``all-linear`` (every projection of attention and
feed-forward) or a list whose entries are

- role names: ``q``, ``k``, ``v`` (slices of the fused ``qkv``, or of cross-attention's ``q`` / ``kv``),
  ``qkv`` (the whole fused projection as one adapter, PEFT's ``c_attn`` of GPT-2), ``o`` (the
  attention output), ``up``, ``gate``, ``down`` (feed-forward);
- otherwise a regular expression matched in full against *unit names*: a linear layer's module name
  (``encoder.layers.0.ffn.up``, ``target.lm.pooler``), a slice of a fused projection as its module name
  plus the slice (``encoder.layers.0.attention.qkv.q``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from uer.errors import UerError
from uer.layers.attention import MultiHeadAttention
from uer.layers.feedforward import FeedForward
from uer.layers.lora import ALL, LoRALinear

KINDS = ("lora",)
DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "target": ["q", "v"], "rslora": False}
ROLES = ("q", "k", "v", "qkv", "o", "up", "gate", "down")
ALL_LINEAR = ("q", "k", "v", "o", "up", "gate", "down")
MAX_PATTERN = 200
"""Longest regular expression accepted in ``target`` (config files are data from anywhere)."""


def lora_options(adapters_cfg, where: str = "model.adapters") -> dict:
    """The validated LoRA options of a ``model.adapters`` config: ``{r, alpha, dropout, target, rslora}``
    with ``target`` a list.

    Raises:
        UerError: another adapter kind, an unknown key, a value out of range, or a bad pattern; one line
            naming the key.
    """
    cfg = OmegaConf.to_container(adapters_cfg, resolve=True) if OmegaConf.is_config(adapters_cfg) else adapters_cfg
    if not isinstance(cfg, dict) or set(cfg) - set(KINDS) or not cfg:
        raise UerError(f"{where}: expected a mapping with one of {list(KINDS)}, got {cfg!r}"[:300])
    lora = cfg["lora"] if cfg["lora"] is not None else {}
    where = f"{where}.lora"
    if not isinstance(lora, dict) or set(lora) - set(DEFAULTS):
        extra = sorted(set(lora) - set(DEFAULTS)) if isinstance(lora, dict) else lora
        raise UerError(f"{where}: unknown keys {extra}; valid keys: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **lora}
    r, alpha, p = out["r"], out["alpha"], out["dropout"]
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise UerError(f"{where}.r={r}: must be an integer >= 1")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise UerError(f"{where}.alpha={alpha}: must be a number > 0")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise UerError(f"{where}.dropout={p}: must be a number in [0, 1)")
    if not isinstance(out["rslora"], bool):
        raise UerError(f"{where}.rslora={out['rslora']}: must be true or false")
    target = out["target"]
    target = list(ALL_LINEAR) if target == "all-linear" else [target] if isinstance(target, str) else target
    if not isinstance(target, list) or not target or not all(isinstance(t, str) and t for t in target):
        raise UerError(f"{where}.target={out['target']}: must be all-linear or a list of names or patterns")
    for t in target:
        if t not in ROLES:
            if len(t) > MAX_PATTERN:
                raise UerError(f"{where}.target: pattern longer than {MAX_PATTERN} characters")
            try:
                re.compile(t)
            except re.error as e:
                raise UerError(f"{where}.target: {t!r} is neither a role {list(ROLES)} nor a valid pattern ({e})") \
                    from None
    return {**out, "target": target}


def units(model: nn.Module) -> dict[str, tuple[str, str, str, tuple[int, int]]]:
    """Every unit LoRA can adapt: unit name -> (module name, role, slice name, (first row, end row)).

    Attention projections (self: fused ``qkv`` with slices q, k, v and the whole as ``qkv``; cross:
    ``q`` and fused ``kv``), the output ``o``, feed-forward ``up``/``gate``/``down``; every other
    ``nn.Linear`` as a unit of role ``""`` (reachable by pattern only)."""
    found = {}
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            if not isinstance(child, nn.Linear):
                continue
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            rows = (0, child.out_features)
            for role, slice_name, span in _roles(parent, child_name, rows):
                found[name if slice_name == ALL else f"{name}.{slice_name}"] = (name, role, slice_name, span)
    return found


def _roles(parent: nn.Module, child: str, rows: tuple[int, int]) -> list[tuple[str, str, tuple[int, int]]]:
    """(role, slice, rows) of the linear layer ``child`` of ``parent``."""
    if isinstance(parent, MultiHeadAttention):
        q, kv = parent.num_heads * parent.head_dim, parent.num_kv_heads * parent.head_dim
        if child == "qkv":
            return [("qkv", ALL, rows), ("q", "q", (0, q)), ("k", "k", (q, q + kv)), ("v", "v", (q + kv, q + 2 * kv))]
        if child == "kv":
            return [("", ALL, rows), ("k", "k", (0, kv)), ("v", "v", (kv, 2 * kv))]
        return [({"q": "q", "out": "o"}.get(child, ""), ALL, rows)]
    if isinstance(parent, FeedForward) and child in ("up", "gate", "down"):
        return [(child, ALL, rows)]
    return [("", ALL, rows)]


def select(model: nn.Module, target: Iterable[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Module name -> {slice: rows} of the units ``target`` chooses (see the module docstring). A
    whole module chosen together with a slice of it keeps the whole.

    Raises:
        UerError: ``target`` chooses no unit.
    """
    target = list(target)
    roles = {t for t in target if t in ROLES}
    patterns = [re.compile(t) for t in target if t not in ROLES]
    chosen: dict[str, dict[str, tuple[int, int]]] = {}
    for unit, (module, role, slice_name, span) in units(model).items():
        if (role and role in roles) or any(p.fullmatch(unit) for p in patterns):
            chosen.setdefault(module, {})[slice_name] = span
    if not chosen:
        raise UerError(f"model.adapters.lora.target={target} chooses no linear layer of this model; "
                       f"roles: {list(ROLES)}, or patterns over names such as {next(iter(units(model)), '')}")
    return {m: ({ALL: s[ALL]} if ALL in s else s) for m, s in chosen.items()}


def add_lora(model: nn.Module, chosen: dict[str, dict[str, tuple[int, int]]], r: int, alpha: float,
             dropout: float = 0.0, rslora: bool = False) -> nn.Module:
    """Wrap each chosen module (:func:`select`) in a :class:`LoRALinear` with those slices, in place,
    and freeze everything else: only LoRA parameters keep ``requires_grad``. Returns ``model``."""
    for name, slices in sorted(chosen.items()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        wrapped = LoRALinear.wrap(getattr(parent, child), slices=slices, r=r, alpha=alpha, dropout=dropout,
                                  rslora=rslora)
        setattr(parent, child, wrapped)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_key(name))
    return model


def apply_adapters(model: nn.Module, adapters_cfg) -> nn.Module:
    """Apply ``model.adapters`` (:func:`lora_options`) to a built ``model`` in place; None = no-op.

    Raises:
        UerError: a bad adapter config or a target that chooses nothing.
    """
    if adapters_cfg is None:
        return model
    o = lora_options(adapters_cfg)
    return add_lora(model, select(model, o["target"]), o["r"], o["alpha"], o["dropout"], o["rslora"])


def is_adapter_key(name: str) -> bool:
    """Whether a parameter name is a LoRA factor (``....lora_A.<slice>`` / ``....lora_B.<slice>``)."""
    return ".lora_A." in name or ".lora_B." in name or name.startswith(("lora_A.", "lora_B."))


def adapter_state(model: nn.Module) -> dict:
    """The LoRA tensors of ``model`` by parameter name (what an adapter-only checkpoint stores)."""
    return {k: v for k, v in model.state_dict().items() if is_adapter_key(k)}


def load_base(model: nn.Module, state: dict) -> None:
    """Load a base model's ``state`` (no LoRA tensors) into the adapted ``model``: every non-LoRA
    tensor must be given, and nothing else.

    Raises:
        UerError: the state does not fit the base of ``model``.
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise UerError(f"base weights do not fit the model ({str(e).splitlines()[-1].strip()})") from None
    missing = [k for k in missing if not is_adapter_key(k)]
    if missing or unexpected:
        raise UerError(f"base weights do not match the model; missing {sorted(missing)[:5]}, "
                       f"unexpected {sorted(unexpected)[:5]}")


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight (W + s·B·A), in place: the result has no LoRA
    modules and, in eval mode, the adapted model's outputs. Returns ``model``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.merged())
    return model


def base_config(model_cfg: DictConfig) -> DictConfig:
    """``model_cfg`` without its ``adapters`` entry: the config of the base model."""
    out = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    out.pop("adapters", None)
    return out
