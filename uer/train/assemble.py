"""One way to assemble a run (DESIGN §5): pretraining (:func:`uer.train.run.prepare`) and the
fine-tuning recipes (``examples/finetune.py``) both turn their config groups, model and data into a
:class:`~uer.train.trainer.Trainer` with :func:`build_trainer`; what differs between tasks comes in
as callbacks (:mod:`uer.train.callbacks`), an evaluator and target options."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from uer.data.loader import BatchLoader, check_loader_options
from uer.errors import UerError
from uer.train import distributed
from uer.train.callbacks import Callback
from uer.train.config import (OptimConfig, SchedulerConfig, TrainerConfig, check_optim, check_scheduler,
                              check_trainer, validated)
from uer.train.optim import build_optimizer, build_scheduler
from uer.train.trainer import Trainer, pick_device

log = logging.getLogger("uer")


class Settings(NamedTuple):
    """The validated ``trainer``, ``optim`` and ``scheduler`` groups of a run config."""

    trainer: TrainerConfig
    optim: OptimConfig
    scheduler: SchedulerConfig


def settings(cfg: DictConfig) -> Settings:
    """Validate ``cfg.trainer``, ``cfg.optim`` and ``cfg.scheduler`` against their schemas and
    their values' ranges, and the loader options of ``cfg.data`` if the config has that section.

    Raises:
        UerError: an unknown key, a value of the wrong type, or a value no run can use (the message
            names the key: ``optim.lr=-1.0: must be > 0``).
    """
    t = validated(cfg.trainer, TrainerConfig, "trainer")
    check_trainer(t)
    optim = validated(cfg.optim, OptimConfig, "optim")
    check_optim(optim)
    scheduler = validated(cfg.scheduler, SchedulerConfig, "scheduler")
    check_scheduler(scheduler)
    if cfg.get("data") is not None:
        check_loader_options(cfg.data)
    return Settings(t, optim, scheduler)


class Data(NamedTuple):
    """What a :class:`BatchLoader` draws from: ``rows`` (indexable by a list of ids, giving columns),
    the row ``indices`` of this split, ``collate(columns, rngs) -> batch`` and the per-rank
    ``batch_size``; ``num_workers`` loader processes."""

    rows: object
    indices: np.ndarray
    collate: Callable
    batch_size: int
    num_workers: int = 0


def build_trainer(model: nn.Module, run: Settings, run_config: DictConfig, tokenizer, train: Data,
                  eval_data: Data | None = None, evaluator=None, callbacks: Sequence[Callback] = (),
                  layer_decay: float = 1.0, resume_from: Path | None = None) -> Trainer:
    """The Trainer of a run, in every process of a torchrun launch: ``model`` moved to this rank's
    device and wrapped for ``trainer.strategy`` (DDP or FSDP2; nothing in one process), the optimizer
    (with layer-wise learning-rate decay ``layer_decay``, see :func:`uer.train.optim.build_optimizer`)
    built after the wrap, the schedule, the train loader (shuffled, this rank's share of each global
    batch, seeded by ``trainer.seed``) and the held-out loader (in order, every row), then resumed from
    ``resume_from`` if given.

    In a multi-process run each rank reseeds torch with ``trainer.seed + rank`` after the model is
    built, so dropout differs between ranks.

    Args:
        model: the unwrapped model, built with the same weights on every rank.
        run: :func:`settings` of the run config.  run_config, tokenizer: written into checkpoints.
        train, eval_data: the training and held-out data.
        evaluator, callbacks: see :class:`~uer.train.trainer.Trainer` (callbacks built on ``model``).

    Raises:
        UerError: fewer training rows than one global batch; a checkpoint that cannot be resumed (on
            every rank alike).
    """
    t = run.trainer
    device = distributed.init(pick_device(t.device))
    model.to(device)
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1:
        torch.manual_seed(t.seed + rank)  # dropout differs between ranks
    parallel = distributed.wrap(model, t.strategy, device)
    optimizer = build_optimizer(model, run.optim, layer_decay)  # after wrap: FSDP2 swaps in sharded parameters
    scheduler = build_scheduler(optimizer, run.scheduler, t.max_steps)
    pin = device.type == "cuda"
    try:
        train_loader = BatchLoader(train.rows, train.indices, train.collate, train.batch_size, seed=t.seed,
                                   rank=rank, world_size=world, num_workers=train.num_workers, pin_memory=pin)
    except ValueError as e:
        raise UerError(f"data: {e}; use a larger corpus or a smaller data.batch_size") from None
    eval_loader = None
    if eval_data is not None and len(eval_data.indices):
        eval_loader = BatchLoader(eval_data.rows, eval_data.indices, eval_data.collate, eval_data.batch_size,
                                  seed=t.seed, shuffle=False, drop_last=False, rank=rank, world_size=world,
                                  num_workers=eval_data.num_workers, pin_memory=pin)
    trainer = Trainer(parallel, optimizer, scheduler, train_loader, t, Path(t.output_dir), run_config, tokenizer,
                      eval_loader, evaluator, callbacks)
    if resume_from is not None:
        error = None
        try:
            trainer.resume(resume_from)
        except UerError as e:
            error = str(e)
        distributed.agree(error)
    return trainer
