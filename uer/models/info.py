"""What a model config builds, without building it: the parameter count of each part, counted on
PyTorch's ``meta`` device (shapes only, no memory), so ``uer-pretrain +model=llama3_8b --info``
answers in seconds for a model that would need 32 GB in float32."""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError
from uer.models.build import build_model

PARTS = ("embedding", "encoder", "tgt_embedding", "decoder", "target")


def parameter_counts(model_cfg: DictConfig) -> dict[str, int]:
    """Parameters per part of the model ``model_cfg`` builds (parts it lacks left out) and ``total``.
    A tied parameter (an LM head sharing the word table) counts once, in the part that owns it,
    as ``sum(p.numel() for p in model.parameters())`` counts it.

    Raises:
        UerError: ``model.vocab_size`` (or another size) left null for the data to fill in, or any
            error :func:`uer.models.build_model` raises.
    """
    missing = [k for k in ("vocab_size",) if k in model_cfg and OmegaConf.select(model_cfg, k) is None]
    if missing:
        raise UerError(f"model.{missing[0]} is null (taken from the tokenizer when training); "
                       f"give model.{missing[0]}=N to count parameters")
    with torch.device("meta"):
        model = build_model(model_cfg)
    seen: set[int] = set()
    counts = {}
    for part in PARTS:
        module = getattr(model, part, None)
        if module is not None:
            params = [p for p in module.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            counts[part] = sum(p.numel() for p in params)
    counts["total"] = sum(counts.values())
    return counts


def describe(model_cfg: DictConfig) -> str:
    """A few lines for people: the preset, parameters per part and in total, and the weights' size
    in float32 and bfloat16 (GB = 10^9 bytes)."""
    counts = parameter_counts(model_cfg)
    total = counts.pop("total")
    sizes = f"{total * 4 / 1e9:.2f} GB in float32, {total * 2 / 1e9:.2f} GB in bfloat16"
    lines = [f"model {model_cfg.get('name', '?')}: {total:,} parameters ({sizes})"]
    lines += [f"  {part}: {n:,}" for part, n in counts.items()]
    return "\n".join(lines)
