"""The training state a checkpoint holds besides the weights (``state/``: optimizer, schedule, step
counters, data position, RNG, loss scaler), captured from and restored into a
:class:`~uer.train.trainer.Trainer`, so that N steps == N/2 steps + resume, bit for bit.

Resuming applies the run's current settings: the optimizer's hyperparameters (``optim.lr``,
``betas``, ``eps``, ``weight_decay``, ``momentum``, ``fused``) and the schedule (``scheduler.*``,
``trainer.max_steps``) come from the config being resumed, not from the checkpoint; only the moments
(``exp_avg`` ...), the step counts and the schedule's position (``last_epoch``) carry over. So the
learning rate after resuming at step s is the new schedule's at s with the new peak, and the config
written into the next checkpoints is the one trained with. Refused with one line: another optimizer
(``optim.name``), fewer ``trainer.max_steps`` than the checkpoint's step, and what
:mod:`uer.train.state_check` finds wrong in the files."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from uer.errors import UerError
from uer.models.adapter_checkpoint import load_trained_weights
from uer.train import distributed
from uer.train.checkpoint import load_sharded, load_state, load_weights
from uer.train.state_check import check_state

log = logging.getLogger("uer")


def capture(trainer) -> dict:
    """The state ``save_checkpoint`` writes: ``optimizer`` (None when sharded: FSDP2 state goes to
    DCP shards), ``scheduler``, ``rng`` (CPU and every CUDA device) and ``trainer`` (step, samples
    and tokens seen, skipped steps, data position, loss scaler). The samples and tokens seen include
    the steps since the last log line (read from the throughput window, summed over ranks: every
    rank calls this), so the counters continue exactly on resume."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    samples, tokens, _, _ = trainer.window.read(trainer.device)
    return {
        "optimizer": None if trainer.sharded else trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": rng,
        "trainer": {"step": trainer.step, "samples_seen": trainer.samples_seen + samples,
                    "tokens_seen": trainer.tokens_seen + tokens, "skipped_steps": trainer.guard.skipped,
                    "data": trainer.train_loader.state_dict(),
                    "scaler": trainer.scaler.state_dict() if trainer.scaler else None},
    }


def restore(trainer, checkpoint: Path) -> None:
    """Restore weights, optimizer, schedule, data position and RNG from ``checkpoint`` into
    ``trainer``, after checking every state file against it (:func:`uer.train.state_check.check_state`)
    and before loading any; then apply the run's optimizer and schedule settings (module docstring).
    Sharded (FSDP2) checkpoints load into any number of processes; the RNG of a rank the checkpoint
    had no process for keeps its fresh seed (only dropout draws then differ from the original run).

    Raises:
        UerError: a state file that is missing, unreadable or does not fit the run (named, with what
            is wrong), a DDP checkpoint resumed under FSDP2, another optimizer, ``trainer.max_steps``
            below the checkpoint's step, or a data position saved with another seed or global batch size.
    """
    checkpoint = Path(checkpoint)
    state = load_state(checkpoint, distributed.rank())
    if state["optimizer"] is not None and trainer.sharded:
        raise UerError(f"{checkpoint}: written without trainer.strategy=fsdp2, so it cannot resume a "
                       "sharded run; resume with trainer.strategy=ddp or start from it with trainer.init_from")
    check_state(checkpoint, state, trainer, distributed.rank())
    t = state["trainer"]
    if trainer.cfg.max_steps < t["step"]:
        raise UerError(f"trainer.max_steps={trainer.cfg.max_steps} is below the step {t['step']} of {checkpoint}; "
                       "raise it to continue the run")
    settings = [{k: v for k, v in group.items() if k != "params"} for group in trainer.optimizer.param_groups]
    if state["optimizer"] is None:
        load_sharded(checkpoint, trainer.model, trainer.optimizer)
    else:
        load_trained_weights(trainer.model, checkpoint, load_weights)  # adapter-only: LoRA on the init_from base
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    apply_settings(trainer.optimizer, trainer.scheduler, settings)
    if state["rng"] is None:
        log.warning("rank %d: %s has no RNG state for this rank (saved by fewer processes)",
                    distributed.rank(), checkpoint)
    else:
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
    trainer.step, trainer.samples_seen, trainer.tokens_seen = t["step"], t["samples_seen"], t["tokens_seen"]
    trainer.guard.skipped = t.get("skipped_steps", 0)
    try:
        trainer.train_loader.load_state_dict(t["data"])
    except ValueError as e:
        raise UerError(f"{checkpoint}: {e}") from None
    if trainer.scaler and t.get("scaler"):
        trainer.scaler.load_state_dict(t["scaler"])
    log.info("resumed from %s at step %d", checkpoint, trainer.step)


def apply_settings(optimizer: torch.optim.Optimizer, scheduler, settings: list[dict]) -> None:
    """Put the run's hyperparameters back after a checkpoint's state was loaded: each parameter
    group's ``settings`` (everything but ``params``, as built from the config, ``initial_lr`` the
    peak learning rate) replace the loaded ones, the schedule's ``base_lrs`` become the new peaks and
    each group's ``lr`` the schedule's value at the loaded step (``base_lr · lr_lambda(last_epoch)``,
    as ``torch.optim.lr_scheduler.LambdaLR`` computes it: every schedule that
    :func:`uer.train.optim.build_scheduler` offers is one). Changed settings are logged.
    """
    changed = {("lr" if k == "initial_lr" else k): (group.get(k), v)
               for group, new in zip(optimizer.param_groups, settings) for k, v in new.items()
               if k != "lr" and group.get(k) != v}
    if changed:
        log.info("resuming with the config's optimizer settings; changed since the checkpoint: %s",
                 ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(changed.items())))
    for group, new in zip(optimizer.param_groups, settings):
        group.update(new)
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    for group, base, lr_lambda in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * lr_lambda(scheduler.last_epoch)
