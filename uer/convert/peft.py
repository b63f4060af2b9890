"""LoRA adapters <-> PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``), and
merging an adapter into its base.

Export maps each uer LoRA factor onto the Hugging Face module the family's conversion spec gives its
linear layer (:mod:`uer.convert.spec`): ``encoder.layers.0.attention.qkv`` with slices q and v
becomes ``model.layers.0.self_attn.q_proj`` and ``...v_proj`` (Llama) or ``bert.encoder.layer.0.
attention.self.query`` / ``value`` (BERT); B's rows go through the rule's transform (split of the
fused rows, any row permutation), A is shared. GPT-2 keeps q, k, v fused in one ``Conv1D``
(``c_attn``), whose LoRA factors have ``nn.Linear``'s layout: an adapter on the whole ``qkv`` maps
onto ``c_attn`` as it is; several slices of it become one adapter of rank k·r on ``c_attn`` (A
stacked, B block-diagonal over the rows, ``rank_pattern``/``alpha_pattern`` keeping the scaling).
So ``peft.PeftModel.from_pretrained(<the exported base>, <this directory>)`` computes what the uer
model computes. Import is the inverse, onto a uer base model.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from uer.config import resolve
from uer.convert.configs import export_head
from uer.convert.engine import num_layers, rules_for
from uer.convert.files import staged
from uer.convert.load import load_pretrained
from uer.convert.spec import IDENTITY, Rule, Transpose
from uer.errors import UerError
from uer.layers.lora import ALL, LoRALinear
from uer.models.adapter_checkpoint import ADAPTER_WEIGHTS, BASE_KEY, base_record, save_adapter
from uer.models.adapters import add_lora, base_config, merge_adapters, select, units
from uer.models.pretrained import CONFIG, load_config, save_pretrained
from uer.models.untrusted import load_json

ADAPTER_CONFIG = "adapter_config.json"
PREFIX = "base_model.model."


def _rules(model_cfg, architecture: str | None, recorded: str | None):
    """(family, head, uer module name -> rule of its weight) of the export head of ``model_cfg``."""
    family, head = export_head(model_cfg, architecture, recorded)
    rules = {r.uer.removesuffix(".weight"): r for r in rules_for(family, head, num_layers(model_cfg))
             if r.uer.endswith(".weight")}
    return family, head, rules


def _rows(rule: Rule, model: torch.nn.Module):
    """The transform B's rows (output features) take: the rule's (bound to ``model``'s sizes, as a
    grouped-query q/k/v split needs), except that a ``Conv1D`` keeps ``nn.Linear``'s LoRA layout
    (PEFT's ``fan_in_fan_out`` only affects merging)."""
    return IDENTITY if isinstance(rule.transform, Transpose) else rule.transform.bound(model, rule.uer)


def _covered(rule: Rule, model: torch.nn.Module, out: int, span: tuple[int, int]) -> list[bool]:
    """Which HF tensors of ``rule`` hold any of the uer rows ``span`` (of ``out``). A tensor holding
    only some gets B with zero rows elsewhere: still exactly the uer update."""
    mark = torch.zeros(out, 1)
    mark[span[0]:span[1]] = 1
    return [bool(p.sum()) for p in _rows(rule, model).to_hf(mark)]


def _suffixes(adapted: set[str], candidates: set[str]) -> list[str]:
    """PEFT ``target_modules``: for each adapted module the shortest dotted suffix that names no
    other (non-adapted) module, so PEFT wraps exactly these."""
    out = set()
    for name in adapted:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if not any(c == suffix or c.endswith("." + suffix) for c in candidates - adapted):
                out.add(suffix)
                break
    return sorted(out)


def to_peft(model: torch.nn.Module, model_cfg, architecture: str | None = None, recorded: str | None = None
            ) -> tuple[dict[str, torch.Tensor], dict]:
    """The PEFT tensors and ``adapter_config.json`` of the LoRA modules of ``model`` (whose resolved
    config, ``model.adapters`` included, is ``model_cfg``), on the Hugging Face head ``architecture``
    (default as :func:`uer.convert.api.uer_to_hf` picks it).

    Raises:
        UerError: no LoRA in the model, or a LoRA module without a place in the head.
    """
    family, head, rules = _rules(base_config(model_cfg), architecture, recorded)
    pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not lora:
        raise UerError("the model has no LoRA adapters (model.adapters) to export")
    conv1d = False
    for name, module in lora.items():
        rule = rules.get(name)
        if rule is None:
            raise UerError(f"LoRA on {name}: {head.architecture} has no module for it")
        conv1d |= isinstance(rule.transform, Transpose)
        for slice_name, span in module.slices.items():
            full = module.lora_B[slice_name].new_zeros(module.out_features, module.r)
            full[span[0]:span[1]] = module.lora_B[slice_name].detach()
            covered = _covered(rule, model, module.out_features, span)
            for hf, b, used in zip(rule.hf, _rows(rule, model).to_hf(full), covered, strict=True):
                if used:
                    pairs.setdefault(hf.removesuffix(".weight"), []).append((module.lora_A[slice_name].detach(), b))
    first = next(iter(lora.values()))
    r, alpha = first.r, first.alpha
    tensors, ranks, alphas = {}, {}, {}
    for hf, found in pairs.items():
        k = len(found)
        a = torch.cat([a for a, _ in found])  # (k·r, in)
        b = torch.cat([b for _, b in found], dim=1) if k > 1 else found[0][1]  # (out, k·r): each block its own A
        tensors[f"{PREFIX}{hf}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{hf}.lora_B.weight"] = b.contiguous()
        if k > 1:  # rank k·r with the scaling of rank r
            ranks[hf], alphas[hf] = k * r, alpha * (math.sqrt(k) if first.rslora else k)
    candidates = {n.removesuffix(".weight") for rule in rules.values() for n in rule.hf}
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM" if family.generation else None,
        "base_model_name_or_path": None, "r": r, "lora_alpha": alpha, "lora_dropout": first.lora_dropout.p,
        "use_rslora": first.rslora, "target_modules": _suffixes(set(pairs), candidates), "bias": "none",
        "fan_in_fan_out": conv1d, "rank_pattern": ranks, "alpha_pattern": alphas, "init_lora_weights": True,
        "inference_mode": True, "modules_to_save": None,
        "auto_mapping": {"base_model_class": head.architecture, "parent_library": "transformers"},
    }
    return tensors, config


def export_peft(src: str | Path, dst: str | Path, architecture: str | None = None) -> Path:
    """Write the PEFT adapter directory of the uer LoRA checkpoint ``src`` (adapter-only or full) to ``dst``.
    Its ``base_model_name_or_path`` is the recorded base; load it onto that base exported with
    ``uer-convert`` (or onto the Hugging Face directory it was trained from).

    Raises:
        UerError: see :func:`to_peft`; or an existing ``dst``.
    """
    model, cfg, _ = load_pretrained(src, dtype=None)
    record = OmegaConf.to_container(cfg.convert, resolve=False) if cfg.get("convert") else {}
    tensors, config = to_peft(model, resolve(cfg.model), architecture, record.get("architecture"))
    config["base_model_name_or_path"] = str(cfg[BASE_KEY].path) if cfg.get(BASE_KEY) else None
    with staged(Path(dst)) as out:
        out.mkdir()
        save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Path(dst)


def import_peft(src: str | Path, dst: str | Path, base: str | Path | None = None) -> Path:
    """Write the uer adapter-only checkpoint of the PEFT LoRA directory ``src`` to ``dst``, on the
    base model ``base`` (a uer checkpoint or Hugging Face directory; default: the adapter's
    ``base_model_name_or_path`` when that is a local directory).

    Raises:
        UerError: no base, not a LoRA adapter, or a module the base's family has no
            uer place for; or an existing ``dst``.
    """
    src = Path(src)
    config = load_json(src / ADAPTER_CONFIG)
    if config.get("peft_type") != "LORA" or config.get("bias", "none") != "none":
        raise UerError(f"{src / ADAPTER_CONFIG}: only LoRA adapters without trained biases import "
                       f"(peft_type {config.get('peft_type')}, bias {config.get('bias', 'none')})")
    base = base or config.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise UerError(f"{src}: the base model {base or '(none)'} is not a local directory; pass --base")
    base = Path(base)
    try:
        tensors = load_file(str(src / ADAPTER_WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise UerError(f"{src / ADAPTER_WEIGHTS}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    model, cfg, tokenizer = load_pretrained(base, dtype=None)
    model_cfg = resolve(cfg.model)
    record = OmegaConf.to_container(cfg.convert, resolve=False) if cfg.get("convert") else {}
    _, _, rules = _rules(model_cfg, None, record.get("architecture"))
    alpha, rslora = config["lora_alpha"], bool(config.get("use_rslora"))
    r = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
    found = _uer_factors(tensors, rules, model, config, r, src)
    chosen = {name: {s: span for s, (span, _, _) in slices.items()} for name, slices in found.items()}
    targets = _target(model, chosen)
    add_lora(model, chosen, r, alpha, float(config.get("lora_dropout") or 0.0), rslora)
    with torch.no_grad():
        for name, slices in found.items():
            module = model.get_submodule(name)
            for s, (_, a, b) in slices.items():
                module.lora_A[s].copy_(a)
                module.lora_B[s].copy_(b)
    lora = {"r": r, "alpha": alpha, "dropout": float(config.get("lora_dropout") or 0.0), "rslora": rslora,
            "target": targets}
    out_cfg = OmegaConf.create({"model": {**OmegaConf.to_container(model_cfg), "adapters": {"lora": lora}},
                                BASE_KEY: base_record(base), "convert": {"peft": str(src.resolve())}})
    with staged(Path(dst)) as out:
        save_adapter(out, model, out_cfg, tokenizer)
    return Path(dst)


def _target(model: torch.nn.Module, chosen: dict) -> list[str]:
    """The ``model.adapters.lora.target`` that chooses exactly ``chosen`` (module -> slices): role names
    when they do (``[q, v]``), else the unit names as patterns."""
    names = [f"{n}.{s}" if s != ALL else n for n, slices in sorted(chosen.items()) for s in slices]
    found = units(model)
    roles = sorted({found[name][1] for name in names})
    if all(roles) and select(model, roles) == chosen:
        return roles
    return [re.escape(name) for name in names]


def _scaling(config: dict, hf: str) -> tuple[int, float]:
    """(rank, scaling) of the PEFT module ``hf`` (``rank_pattern``/``alpha_pattern`` keys are regexes
    matched at the end of the module name, as PEFT does)."""
    def value(patterns: dict, default):
        for key, v in (patterns or {}).items():
            try:
                if len(key) <= 200 and re.fullmatch(rf"(.*\.)?(?:{key})", hf):
                    return v
            except re.error:
                raise UerError(f"{ADAPTER_CONFIG}: {key!r} is not a valid pattern") from None
        return default
    rank = int(value(config.get("rank_pattern"), config["r"]))
    alpha = float(value(config.get("alpha_pattern"), config["lora_alpha"]))
    return rank, alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _uer_factors(tensors, rules, model, config, r, src):
    """uer module -> {slice: (rows, A, B)} of the PEFT ``tensors``, each at rank ``r`` (zero-padded)
    with its scaling folded into B where it differs from the uer scaling at ``r``."""
    by_hf = {n.removesuffix(".weight"): (uer, i) for uer, rule in rules.items() for i, n in enumerate(rule.hf)}
    spans = {(m, span): s for m, _, s, span in units(model).values()}
    found: dict[str, dict] = {}
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        hf = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
        if hf not in by_hf:
            raise UerError(f"{src}: LoRA on {hf}, which the base model has no uer place for")
        uer, i = by_hf[hf]
        rule, module = rules[uer], model.get_submodule(uer)
        a, b = tensors[key], tensors[f"{PREFIX}{hf}.lora_B.weight"]
        rank, own = _scaling(config, hf)
        if a.shape[0] != rank or b.shape[1] != rank:
            raise UerError(f"{src}: {hf} has rank {a.shape[0]}, the config says {rank}")
        ours = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)  # uer's, at rank r
        a = torch.cat([a, a.new_zeros(r - rank, a.shape[1])])
        b = torch.cat([b * (own / ours) if own != ours else b, b.new_zeros(b.shape[0], r - rank)], dim=1)
        sizes = _rows(rule, model).to_hf(torch.zeros(module.out_features, 1))
        parts = [b if j == i else torch.zeros(p.shape[0], r, dtype=b.dtype) for j, p in enumerate(sizes)]
        marks = [torch.full((p.shape[0], 1), float(j == i)) for j, p in enumerate(sizes)]
        rows = _rows(rule, model).to_uer(marks)[:, 0].nonzero()[:, 0]
        span = (int(rows.min()), int(rows.max()) + 1)
        slice_name = ALL if span == (0, module.out_features) else spans.get((uer, span))
        if slice_name is None or len(rows) != span[1] - span[0]:
            raise UerError(f"{src}: LoRA on {hf} covers rows of {uer} that are no q, k or v slice")
        found.setdefault(uer, {})[slice_name] = (span, a, _rows(rule, model).to_uer(parts)[span[0]:span[1]])
    if not found:
        raise UerError(f"{src / ADAPTER_WEIGHTS}: no LoRA tensors (*.lora_A.weight)")
    return found


def merge(src: str | Path, dst: str | Path) -> Path:
    """Write the uer checkpoint of ``src`` (a LoRA checkpoint) with every adapter folded into its base
    weights (:func:`uer.models.adapters.merge_adapters`) to ``dst``: a plain checkpoint that
    ``uer-convert`` exports and every command loads, with the adapted model's outputs.

    Raises:
        UerError: ``src`` has no adapters, or an existing ``dst``.
    """
    model, cfg, tokenizer = load_pretrained(src, dtype=None)
    if not any(isinstance(m, LoRALinear) for m in model.modules()):
        raise UerError(f"{src}: has no LoRA adapters (model.adapters) to merge")
    merge_adapters(model)
    out_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out_cfg.model.pop("adapters")
    out_cfg.pop(BASE_KEY, None)
    with staged(Path(dst)) as out:
        save_pretrained(out, model, out_cfg, tokenizer)
    return Path(dst)


def adapter_kind(src: str | Path) -> str | None:
    """``"peft"`` for a PEFT adapter directory (adapter_config.json, no config.json), ``"lora"`` for a
    uer checkpoint with ``model.adapters``, else None (a model directory ``uer-convert`` converts as usual)."""
    src = Path(src)
    if (src / ADAPTER_CONFIG).is_file() and not (src / "config.json").is_file():
        return "peft"
    if (src / CONFIG).is_file() and load_config(src).get("model", {}).get("adapters") is not None:
        return "lora"
    return None
