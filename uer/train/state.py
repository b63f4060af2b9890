"""The training state a checkpoint holds besides the weights (``state/``: optimizer, schedule, step
counters, data position, RNG, loss scaler), captured from and restored into a
:class:`~uer.train.trainer.Trainer`, so that N steps == N/2 steps + resume, bit for bit."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from uer.errors import UerError
from uer.train import distributed
from uer.train.checkpoint import load_sharded, load_state, load_weights

log = logging.getLogger("uer")


def capture(trainer) -> dict:
    """The state ``save_checkpoint`` writes: ``optimizer`` (None when sharded: FSDP2 state goes to
    DCP shards), ``scheduler``, ``rng`` (CPU and every CUDA device) and ``trainer`` (step, samples
    and tokens seen, skipped steps, data position, loss scaler)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return {
        "optimizer": None if trainer.sharded else trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": rng,
        "trainer": {"step": trainer.step, "samples_seen": trainer.samples_seen, "tokens_seen": trainer.tokens_seen,
                    "skipped_steps": trainer.guard.skipped, "data": trainer.train_loader.state_dict(),
                    "scaler": trainer.scaler.state_dict() if trainer.scaler else None},
    }


def restore(trainer, checkpoint: Path) -> None:
    """Restore weights, optimizer, schedule, data position and RNG from ``checkpoint`` into
    ``trainer``. Sharded (FSDP2) checkpoints load into any number of processes; the RNG of a rank the
    checkpoint had no process for keeps its fresh seed (only dropout draws then differ from the
    original run).

    Raises:
        UerError: no complete training state, a DDP checkpoint resumed under FSDP2, or a data
            position saved with another seed or global batch size.
    """
    checkpoint = Path(checkpoint)
    state = load_state(checkpoint, distributed.rank())
    if state["optimizer"] is None:
        load_sharded(checkpoint, trainer.model, trainer.optimizer)
    elif trainer.sharded:
        raise UerError(f"{checkpoint}: written without trainer.strategy=fsdp2, so it cannot resume a "
                       "sharded run; resume with trainer.strategy=ddp or start from it with trainer.init_from")
    else:
        load_weights(trainer.model, checkpoint / "model.safetensors")
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if state["rng"] is None:
        log.warning("rank %d: %s has no RNG state for this rank (saved by fewer processes)",
                    distributed.rank(), checkpoint)
    else:
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
    t = state["trainer"]
    trainer.step, trainer.samples_seen, trainer.tokens_seen = t["step"], t["samples_seen"], t["tokens_seen"]
    trainer.guard.skipped = t.get("skipped_steps", 0)
    try:
        trainer.train_loader.load_state_dict(t["data"])
    except ValueError as e:
        raise UerError(f"{checkpoint}: {e}") from None
    if trainer.scaler and t.get("scaler"):
        trainer.scaler.load_state_dict(t["scaler"])
    log.info("resumed from %s at step %d", checkpoint, trainer.step)
