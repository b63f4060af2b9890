"""Adapter-only checkpoints (DESIGN §6): the LoRA weights of a run and the base they adapt.

::

    adapter_model.safetensors    the LoRA tensors under uer parameter names (..qkv.lora_A.q ...)
    config.yaml                  the run config; model.adapters says where LoRA sits, and
                                 adapter_base: {path, sha256} names the base model directory and the
                                 sha256 of its weight files
    tokenizer.json ...           as in a full checkpoint
    state/                       training state, as in a full checkpoint

A training run writes them when it adapts a base named by ``trainer.init_from`` (a uer checkpoint or
a Hugging Face directory). Loading one (:func:`uer.convert.load_pretrained`) loads the base, refuses
it with one line if its weights no longer have the recorded digest, applies ``model.adapters`` and
loads the LoRA tensors strictly.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from uer.errors import UerError
from uer.models.adapters import adapter_state, is_adapter_key
from uer.models.pretrained import CONFIG, WEIGHTS

ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_KEY = "adapter_base"
WEIGHT_FILES = (WEIGHTS, "model.safetensors.index.json", "pytorch_model.bin")


def is_adapter_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds adapter weights instead of full weights."""
    directory = Path(directory)
    return (directory / ADAPTER_WEIGHTS).is_file() and not (directory / WEIGHTS).is_file()


def weights_digest(directory: Path) -> str:
    """sha256 over the weight files of a model directory (uer or Hugging Face: ``model.safetensors``,
    a sharded index with its shards, or ``pytorch_model.bin``), read in 1 MiB blocks.

    Raises:
        UerError: the directory holds no weights file.
    """
    directory = Path(directory)
    files = [directory / n for n in WEIGHT_FILES if (directory / n).is_file()]
    files += sorted(directory.glob("model-*-of-*.safetensors"))
    if not files:
        raise UerError(f"{directory}: no weights ({', '.join(WEIGHT_FILES)}) to serve as an adapter's base")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def base_record(directory: Path) -> dict:
    """``{"path": absolute path, "sha256": weights_digest}``: how an adapter checkpoint names its base."""
    return {"path": str(Path(directory).resolve()), "sha256": weights_digest(directory)}


def check_base(record, where: str) -> Path:
    """The base directory of the adapter-checkpoint ``record`` (``config.adapter_base``), after checking
    its weights still have the recorded digest.

    Raises:
        UerError: no record, the base is missing, or its weights differ (``where`` names the checkpoint).
    """
    if not isinstance(record, (dict, DictConfig)) or not record.get("path") or not record.get("sha256"):
        raise UerError(f"{where}: holds adapter weights but no {BASE_KEY}: {{path, sha256}} naming its base")
    base = Path(record["path"])
    if not base.is_dir():
        raise UerError(f"{where}: its base model {base} is missing")
    found = weights_digest(base)
    if found != record["sha256"]:
        raise UerError(f"{where}: the base model {base} differs from the one the adapter was trained on "
                       f"(weights sha256 {found[:12]}…, expected {str(record['sha256'])[:12]}…)")
    return base


def save_adapter(directory: Path, model: nn.Module, config: DictConfig, tokenizer=None,
                 state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the adapter-only files of ``model`` (its LoRA tensors, from ``state_dict`` when given:
    full tensors gathered from FSDP2 shards), ``config`` (resolved; it must hold ``adapter_base``) and
    ``tokenizer`` into ``directory``. Not atomic by itself, as :func:`uer.models.pretrained.save_pretrained`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(model) if state_dict is None else {k: v for k, v in state_dict.items()
                                                                 if is_adapter_key(k)}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(directory / ADAPTER_WEIGHTS))
    OmegaConf.save(config, directory / CONFIG, resolve=True)
    if tokenizer is not None:
        tokenizer.save(directory)


def load_adapter_weights(model: nn.Module, path: Path) -> None:
    """Load the LoRA tensors of ``path`` (adapter_model.safetensors) into ``model`` strictly: exactly its
    LoRA parameters, with their shapes.

    Raises:
        UerError: unreadable, or not the model's LoRA parameters.
    """
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UerError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    own = {k: v for k, v in model.state_dict().items() if is_adapter_key(k)}
    wrong = [k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape]
    if own.keys() != tensors.keys() or wrong:
        raise UerError(f"{path}: adapter weights do not match model.adapters; missing "
                       f"{sorted(own.keys() - tensors.keys())[:4]}, unexpected {sorted(tensors.keys() - own.keys())[:4]}, "
                       f"wrong shape {sorted(wrong)[:4]}")
    model.load_state_dict(tensors, strict=False)


def load_trained_weights(model: nn.Module, checkpoint: Path, load_full) -> None:
    """Resume: the weights of ``checkpoint`` into ``model``: the LoRA tensors of an adapter-only
    checkpoint (the base came from ``trainer.init_from``), else ``load_full(model, model.safetensors)``."""
    checkpoint = Path(checkpoint)
    if is_adapter_checkpoint(checkpoint):
        load_adapter_weights(model, checkpoint / ADAPTER_WEIGHTS)
    else:
        load_full(model, checkpoint / WEIGHTS)
