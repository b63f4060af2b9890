"""``pretrain(cfg)``: from a composed config to a trained model — the body of ``uer-pretrain``.

Order matters for "nothing half-written": every input (config keys, tokenizer, corpus, dataset,
model sizes, checkpoint to resume) is checked before the output directory is created.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from uer.config import resolve
from uer.convert import load_pretrained
from uer.data.collators import make_collator, target_class
from uer.data.fitting import fit_to_data
from uer.data.loader import split_indices
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.adapter_checkpoint import BASE_KEY, base_record
from uer.models.adapters import base_config, load_base
from uer.models.build import DEFAULT_ALLOWED, build_model
from uer.models.pretrained import load_config, model_differences
from uer.preprocess.build import build_dataset, load_dataset_dir
from uer.preprocess.integrity import check_dataset_ids
from uer.preprocess.registry import options_from_config
from uer.train import distributed
from uer.train.assemble import Data, build_trainer, settings
from uer.train.checkpoint import is_resumable, list_checkpoints
from uer.train.config import TrainerConfig
from uer.train.trainer import Trainer, pick_device

log = logging.getLogger("uer")


def load_data(data_cfg: DictConfig, tokenizer=None, allowed: tuple[str, ...] = DEFAULT_ALLOWED):
    """The dataset for ``data_cfg``: ``data.dataset`` if given, else the corpus preprocessed (or
    found in the content-addressed cache) by the processor ``data.processor`` names (a ``_target_``
    under one of the ``allowed`` prefixes). Returns ``(dataset, meta, tokenizer)``.

    Raises:
        UerError: bad data keys or values, a bad corpus, tokenizer or dataset directory.
    """
    if data_cfg.get("dataset"):
        return load_dataset_dir(data_cfg.dataset)
    options = options_from_config(data_cfg, allowed)
    if tokenizer is None and options.tokenizer_spec():
        tokenizer = Tokenizer.load(options.tokenizer_spec())
    dataset, meta, saved = load_dataset_dir(build_dataset(options, tokenizer), verify=False)  # checked by the build
    return dataset, meta, tokenizer or saved


def fill_sizes(model_cfg: DictConfig, tokenizer, meta: dict) -> None:
    """Set ``model.vocab_size`` / ``model.num_labels`` left null from the tokenizer / the data, and
    ``model.tgt_vocab_size`` left null or interpolated from the target tokenizer (``mt`` data).

    Raises:
        UerError: a size is set but smaller than what the data needs.
    """
    if "vocab_size" in model_cfg and tokenizer is not None:
        if model_cfg.vocab_size is None:
            model_cfg.vocab_size = tokenizer.vocab_size
        elif model_cfg.vocab_size < tokenizer.vocab_size:
            raise UerError(f"model.vocab_size={model_cfg.vocab_size} is smaller than the tokenizer's "
                           f"{tokenizer.vocab_size} tokens; leave it null to take the tokenizer's size")
    target = getattr(tokenizer, "target", None)
    if "tgt_vocab_size" in model_cfg and target is not None:
        if OmegaConf.is_interpolation(model_cfg, "tgt_vocab_size") or model_cfg.tgt_vocab_size is None:
            model_cfg.tgt_vocab_size = target.vocab_size
        elif model_cfg.tgt_vocab_size < target.vocab_size:
            raise UerError(f"model.tgt_vocab_size={model_cfg.tgt_vocab_size} is smaller than the target "
                           f"tokenizer's {target.vocab_size} tokens; leave it null to take its size")
    labels = meta.get("label_names")
    if "num_labels" in model_cfg and labels:
        if model_cfg.num_labels is None:
            model_cfg.num_labels = len(labels)
        elif model_cfg.num_labels < len(labels):
            raise UerError(f"model.num_labels={model_cfg.num_labels} is smaller than the {len(labels)} "
                           "classes in the data")


SIZE_KEYS = ("dim", "emb_dim", "num_layers", "num_heads", "ffn_dim", "vocab_size", "max_seq_length", "norm_eps",
             "image_size", "patch_size", "channels", "num_labels", "projection_dim", "codebook_size")
"""Model keys a checkpoint given as ``trainer.init_from`` decides."""


def take_sizes(model_cfg: DictConfig, checkpoint_model: DictConfig, prefix: str = "model") -> None:
    """Copy the checkpoint's sizes (:data:`SIZE_KEYS`) into the preset's model config, so
    ``+model=bert_base trainer.init_from=<a 6-layer, 384-wide BERT>`` trains that model; also the
    sizes of sections that are not parts (no ``_target_``), e.g. CLIP's ``model.text`` and
    ``model.vision``."""
    for key in model_cfg:
        value, theirs = model_cfg.get(key), checkpoint_model.get(key)
        if OmegaConf.is_dict(value) and "_target_" not in value and OmegaConf.is_dict(theirs):
            take_sizes(value, theirs, f"{prefix}.{key}")
        elif key in SIZE_KEYS and key in checkpoint_model and value != theirs:
            log.info("%s.%s=%s from the checkpoint (the preset says %s)", prefix, key, theirs, value)
            model_cfg[key] = theirs


def resume_point(t: TrainerConfig, model_cfg: DictConfig) -> Path | None:
    """The checkpoint to resume from (or None), checking ``trainer.resume`` against the output dir.

    Raises:
        UerError: the output dir holds a run and resume is not set, its checkpoints are all
            weights-only, nothing to resume, or the saved run has another model config.
    """
    if Path(t.output_dir).exists() and not Path(t.output_dir).is_dir():
        raise UerError(f"trainer.output_dir={t.output_dir}: exists and is not a directory")
    found = list_checkpoints(Path(t.output_dir))
    if t.resume is None:
        if found:
            raise UerError(f"output dir {t.output_dir} holds another run ({found[-1].name}); pass "
                           "trainer.resume=auto to continue it or choose another trainer.output_dir")
        return None
    if t.resume == "auto":
        resumable = [c for c in found if is_resumable(c)]  # older ones are weights-only (trainer.keep_state)
        if found and not resumable:
            raise UerError(f"no checkpoint in {t.output_dir} holds training state (they are weights-only: "
                           f"trainer.keep_state=0); start from the weights with trainer.init_from={found[-1]} "
                           "and another trainer.output_dir")
        path = resumable[-1] if resumable else None
    else:
        path = Path(t.resume)
    if path is None:
        log.info("no checkpoint in %s; starting fresh", t.output_dir)
        return None
    diffs = model_differences(resolve(load_config(path).model), model_cfg)
    if diffs:
        raise UerError(f"checkpoint {path} has another model config ({'; '.join(diffs[:3])})")
    return path


def continue_latest_run(cfg: DictConfig) -> None:
    """``trainer.resume=auto`` with the default, timestamped ``trainer.output_dir``
    (``outputs/<model.name>/${now:...}``) continues the latest run of that preset: ``output_dir``
    becomes the folder beside it whose newest checkpoint was written last. Without such a run the
    job starts fresh in the new folder, and the log says so and what to pass instead. An
    ``output_dir`` the user set is left alone."""
    if cfg.trainer.get("resume") != "auto":
        return
    raw = OmegaConf.to_container(cfg.trainer, resolve=False).get("output_dir")
    if not isinstance(raw, str) or "${now:" not in Path(raw).name:
        return
    parent = Path(str(cfg.trainer.output_dir)).parent
    runs = [(list_checkpoints(d)[-1].stat().st_mtime, d) for d in parent.iterdir()
            if d.is_dir() and list_checkpoints(d)] if parent.is_dir() else []
    if not runs:
        log.info("trainer.resume=auto: no run under %s holds a checkpoint; starting fresh (to continue "
                 "a run elsewhere pass trainer.output_dir=<its folder>)", parent)
        return
    cfg.trainer.output_dir = str(max(runs)[1])
    log.info("trainer.resume=auto: continuing the latest run under %s, %s (pass trainer.output_dir=<folder> "
             "for another)", parent, cfg.trainer.output_dir)


class Inputs(NamedTuple):
    """What :func:`load_inputs` read and checked."""

    init_model: torch.nn.Module | None
    """The model of ``trainer.init_from`` (:func:`uer.convert.load_pretrained`), or None."""
    dataset: object
    tokenizer: object
    run_cfg: DictConfig
    resume_from: Path | None


def load_inputs(cfg: DictConfig, t: TrainerConfig) -> Inputs:
    """Read and check every file input of the job ``cfg``: the checkpoint to start from, tokenizer,
    corpus or dataset (preprocessed into the cache if needed), model sizes and the checkpoint to
    resume. Fills ``cfg.model``'s sizes left null. Writes nothing but the dataset cache.

    Raises:
        UerError: the first bad input, named.
    """
    init_model, init_cfg, tokenizer = None, None, None
    if t.init_from:  # a uer checkpoint or a Hugging Face directory (converted on the fly)
        init_model, init_cfg, tokenizer = load_pretrained(t.init_from, t.allowed_targets)
        take_sizes(cfg.model, init_cfg.model)
    dataset, meta, tokenizer = load_data(cfg.data, tokenizer, DEFAULT_ALLOWED + tuple(t.allowed_targets))
    fill_sizes(cfg.model, tokenizer, meta)
    run_cfg = resolve(cfg)
    check_dataset_ids(dataset, run_cfg.model)  # ids beyond the vocabulary: one line, not a CUDA assert
    if init_cfg is not None:
        adapting = run_cfg.model.get("adapters") is not None and init_cfg.model.get("adapters") is None
        diffs = model_differences(resolve(init_cfg.model), base_config(run_cfg.model) if adapting else run_cfg.model)
        if diffs:
            raise UerError(f"trainer.init_from={t.init_from} has another model config ({'; '.join(diffs[:3])})")
        if adapting or init_cfg.get(BASE_KEY):  # LoRA on a named base: checkpoints hold the adapter, name the base
            with open_dict(run_cfg):  # (the base of an adapter-only init_from, which continues training)
                run_cfg[BASE_KEY] = base_record(Path(t.init_from)) if adapting else init_cfg[BASE_KEY]
    resume_from = resume_point(t, run_cfg.model)
    if resume_from is not None and run_cfg.get(BASE_KEY) != load_config(resume_from).get(BASE_KEY):
        raise UerError(f"checkpoint {resume_from} adapts another base than trainer.init_from={t.init_from} "
                       f"(its {BASE_KEY}: {load_config(resume_from).get(BASE_KEY)})")
    longest = meta.get("options", {}).get("seq_length")
    if longest and "max_seq_length" in run_cfg.model:
        position = run_cfg.model.embedding.get("parts", {}).get("position") or {}
        room = run_cfg.model.max_seq_length - position.get("offset", 0)
        if longest > room:
            raise UerError(f"data.seq_length={longest} is longer than the {room} positions of the model "
                           f"(model.max_seq_length={run_cfg.model.max_seq_length})")
    return Inputs(init_model, dataset, tokenizer, run_cfg, resume_from)


def prepare(cfg: DictConfig) -> Trainer:
    """Check every input of the job ``cfg`` (a composed ``pretrain.yaml``) and assemble its
    :class:`Trainer` (:func:`uer.train.assemble.build_trainer`), resumed if ``trainer.resume`` says
    so. Writes nothing.

    Under torchrun, joins the process group after the config checks; rank 0 reads the inputs first
    (building the dataset cache the other ranks then read), a bad input raises the same
    :class:`UerError` on every rank, and the model is wrapped for ``trainer.strategy``.
    """
    continue_latest_run(cfg)
    run = settings(cfg)
    t = run.trainer
    allowed = DEFAULT_ALLOWED + tuple(t.allowed_targets)
    distributed.init(pick_device(t.device))
    torch.manual_seed(t.seed)
    init_model, dataset, tokenizer, run_cfg, resume_from = distributed.main_first(lambda: load_inputs(cfg, t))

    model = build_model(run_cfg.model, allowed)  # the same initial weights on every rank (same seed)
    if init_model is not None:  # built all the same: a run draws the same random numbers with or without it
        load_base(model, init_model.state_dict())  # the whole model, or the base under model.adapters
    collate = make_collator(run_cfg.data, tokenizer, allowed)
    train_idx, eval_idx = split_indices(len(dataset), run_cfg.data.eval_samples, run_cfg.data.seed)
    if resume_from is None:  # parts fitted to the training data (MIM's image tokenizer), unless init_from fitted them
        fit_to_data(model, dataset, train_idx, collate, run_cfg.data.seed)
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trained = f" ({n_trained / 1e6:.3f}M trained: model.adapters)" if n_trained < n_params else ""
    log.info("model %s: %.2fM parameters%s; data: %d training / %d held-out instances; output: %s",
             run_cfg.model.name, n_params / 1e6, trained, len(train_idx), len(eval_idx), t.output_dir)
    batch_size = run_cfg.data.batch_size
    # held-out rows unaugmented: a collator with augmentation (speech's SpecAugment) gives an evaluation() copy
    plain = collate.evaluation() if hasattr(collate, "evaluation") else collate
    held_out = Data(dataset, eval_idx, plain, batch_size)
    evaluator = None
    if run_cfg.data.get("evaluator") is not None:  # task metrics on the held-out rows: evaluator(Data, tokenizer)
        evaluator = target_class(run_cfg.data, "evaluator", allowed)(held_out, tokenizer)
    return build_trainer(model, run, run_cfg, tokenizer,
                         Data(dataset, train_idx, collate, batch_size, run_cfg.data.num_workers),
                         held_out, evaluator=evaluator, resume_from=resume_from)


def pretrain(cfg: DictConfig) -> dict[str, float]:
    """Run the pretraining job ``cfg`` (in every process of a torchrun launch). Returns the final
    train and eval metrics.

    Raises:
        UerError: bad input (on every rank); :class:`uer.train.trainer.NonFiniteError` under
            ``trainer.on_nonfinite=stop``.
        uer.train.trainer.Preempted: SIGTERM arrived; a checkpoint of the last step was written.
    """
    try:
        trainer = prepare(cfg)
        t = trainer.cfg
        metrics = trainer.fit()
        log.info("done: step %d, checkpoints in %s", trainer.step, Path(t.output_dir) / "checkpoints")
        return metrics
    finally:
        distributed.shutdown()
