"""``convert(src, dst)``: a Hugging Face model directory <-> a uer checkpoint (DESIGN §6), the
direction detected from ``src``. Import writes what :func:`uer.convert.reader.read_hf` reads
(its docstring says what the checkpoint holds); export reads the checkpoint with the one loader,
:func:`uer.convert.load_pretrained`, and maps it through the family's spec.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import OmegaConf
from safetensors.torch import save_file

from uer.config import resolve
from uer.convert import engine
from uer.convert.configs import export_head, hf_config_for
from uer.convert.files import copy_passed_through, kind_of, staged
from uer.convert.load import load_pretrained
from uer.convert.peft import adapter_kind, export_peft, import_peft
from uer.convert.reader import HF_DEFAULT_LABELS, TASK_TARGETS, read_hf, with_num_labels
from uer.convert.tencentpretrain import import_tencentpretrain
from uer.convert.tokenizer_config import finish_tokenizer_config
from uer.errors import UerError
from uer.models.pretrained import WEIGHTS, save_pretrained

log = logging.getLogger("uer")


def _num_labels(model_cfg) -> int | None:
    """The label count of the task target of ``model_cfg``, or None without one."""
    return next((p.num_labels for p in model_cfg.target.values()
                 if OmegaConf.is_dict(p) and p.get("_target_") in TASK_TARGETS), None)


def convert(src: str | Path, dst: str | Path, architecture: str | None = None, base: str | Path | None = None,
            config: str | Path | None = None, vocab: str | Path | None = None) -> Path:
    """Convert ``src`` (a Hugging Face model directory or a uer checkpoint) into the other format
    at ``dst``, which must not exist; ``architecture`` picks the Hugging Face class (on import: how
    to read a config.json that names none or several; on export: the head to write). Adapters go
    the same way: a uer LoRA checkpoint exports to a PEFT adapter directory, a PEFT adapter imports
    onto ``base`` (default: its ``base_model_name_or_path``), see :mod:`uer.convert.peft`. A file
    ``src`` is a TencentPretrain/UER-py checkpoint (their ``.bin``), read with their JSON ``config``
    and ``vocab`` (:mod:`uer.convert.tencentpretrain`).

    Raises:
        UerError: bad input (see :func:`hf_to_uer`, :func:`uer_to_hf`, :mod:`uer.convert.peft`);
            ``dst`` is then not created.
    """
    if Path(src).is_file():
        if config is None:
            raise UerError(f"{src}: a file, expected a model directory (Hugging Face or uer); a "
                           "TencentPretrain/UER-py checkpoint (.bin) is a file but needs its JSON config (--config)")
        return import_tencentpretrain(src, config, dst, vocab)
    kind = adapter_kind(src)
    if kind == "peft":
        return import_peft(src, dst, base)
    if kind == "lora":
        return export_peft(src, dst, architecture)
    if kind_of(Path(src)) == "hf":
        return hf_to_uer(src, dst, architecture)
    return uer_to_hf(src, dst, architecture)


def hf_to_uer(src: str | Path, dst: str | Path, architecture: str | None = None) -> Path:
    """Write the uer checkpoint of the Hugging Face model in ``src`` (:func:`~uer.convert.reader.read_hf`)
    to ``dst``.

    Raises:
        UerError: bad input (see :func:`~uer.convert.reader.read_hf`) or an existing ``dst``.
    """
    model, checkpoint_cfg, tokenizer = read_hf(src, architecture)
    with staged(Path(dst)) as out:
        save_pretrained(out, model, checkpoint_cfg, tokenizer)
        copy_passed_through(Path(src), out)
    log.info("%s -> uer checkpoint %s", src, dst)
    return Path(dst)


def uer_to_hf(src: str | Path, dst: str | Path, architecture: str | None = None) -> Path:
    """Write the Hugging Face model directory of the uer checkpoint ``src`` to ``dst``: config.json,
    model.safetensors, the tokenizer (if the checkpoint has one, named as the family's
    ``transformers`` class where that class encodes alike: :mod:`uer.convert.tokenizer_config`), for causal LMs
    generation_config.json, and for image models the preprocessor_config.json the checkpoint brought
    or, where the family has one (CLIP), its image processor's settings.

    Raises:
        UerError: a model no supported architecture can express exactly (the message says what
            differs), missing or corrupt weights, or an existing ``dst``.
    """
    src, dst = Path(src), Path(dst)
    model, cfg, tokenizer = load_pretrained(src, dtype=None)  # the stored dtype: an exact export
    model_cfg = resolve(cfg.model)
    record = OmegaConf.to_container(cfg.convert, resolve=False) if cfg.get("convert") else {}
    extras = record.get("hf_config") or {}
    num_labels = _num_labels(model_cfg)
    if num_labels is not None:  # the count goes to config.json through id2label
        if len(extras.get("id2label") or {}) != num_labels:
            names = {i: f"LABEL_{i}" for i in range(num_labels)}
            extras = {**extras, "id2label": names, "label2id": {n: i for i, n in names.items()}}
        model_cfg = with_num_labels(model_cfg, HF_DEFAULT_LABELS)
    family, head = export_head(model_cfg, architecture, record.get("architecture"))
    tensors, dropped = engine.to_hf(family, head, model, engine.num_layers(model_cfg))
    dtype = next(t.dtype for t in tensors.values() if t.is_floating_point())
    config = hf_config_for(family, head, model_cfg, extras, tokenizer, dtype)
    with staged(dst) as out:
        config.save_pretrained(out)
        save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(out, model_max_length=family.max_positions(model_cfg))
            finish_tokenizer_config(out, tokenizer, family.input_names, family.tokenizer_class)
        if family.generation:  # transformers is imported only when converting (uer.convert loads with training)
            from transformers import GenerationConfig  # lazy: as in uer.convert.configs

            GenerationConfig.from_model_config(config).save_pretrained(out)
        copy_passed_through(src, out)
        processor = out / "preprocessor_config.json"
        if family.image_processor is not None and not processor.exists():
            processor.write_text(json.dumps(family.image_processor(model_cfg), indent=2) + "\n", encoding="utf-8")
    left_out = f"; left out, no place in {head.architecture}: {engine.listing(dropped)}" if dropped else ""
    log.info("uer checkpoint %s -> %s %s (load it with transformers.%s)%s", src, head.architecture, dst,
             head.auto_class, left_out)
    return dst


