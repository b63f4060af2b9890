"""The one training loop for every model (DESIGN §5): ``model(batch) -> TargetOutput``, backward,
accumulation, clipping, optimizer and schedule step; evaluation, logging and checkpoints around it."""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from uer.data.loader import BatchLoader
from uer.train.checkpoint import list_checkpoints, load_state, load_weights, prune_checkpoints, save_checkpoint
from uer.train.config import TrainerConfig
from uer.train.flops import count_flops, peak_flops
from uer.train.metrics import MetricSums, RunLog

log = logging.getLogger("uer")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def batch_size_of(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(samples, real tokens) of a batch, from host tensors: tokens are unpadded ``input_ids``
    positions (0 for image batches)."""
    first = next(iter(batch.values()))
    if "input_ids" not in batch:
        return first.shape[0], 0
    mask = batch.get("attention_mask")
    return first.shape[0], int(mask.sum()) if mask is not None else batch["input_ids"].numel()


class Trainer:
    """Trains ``model`` for ``cfg.max_steps`` optimizer steps.

    Args:
        model: a :class:`uer.models.Model` (or anything with ``forward(batch) -> TargetOutput`` and
            ``num_items(batch)``).
        optimizer, scheduler: stepped once per optimizer step.
        train_loader: a :class:`BatchLoader`; its position is saved in checkpoints.
        cfg: the ``trainer.*`` settings.
        output_dir: where checkpoints, ``metrics.jsonl`` and ``tensorboard/`` go.
        run_config: the resolved config written into each checkpoint.
        tokenizer: saved into each checkpoint (None for image models).
        eval_loader: held-out batches evaluated every ``cfg.eval_every`` steps and at the end.
    """

    def __init__(self, model, optimizer, scheduler, train_loader: BatchLoader, cfg: TrainerConfig,
                 output_dir: Path, run_config, tokenizer=None, eval_loader: BatchLoader | None = None):
        self.cfg, self.output_dir = cfg, Path(output_dir)
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.run_config, self.tokenizer = run_config, tokenizer
        self.dtype = DTYPES[cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.step, self.samples_seen, self.tokens_seen = 0, 0, 0
        self.flops_per_step: int | None = None

    # ----------------------------------------------------------------------------------- state
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "trainer": {"step": self.step, "samples_seen": self.samples_seen, "tokens_seen": self.tokens_seen,
                        "data": self.train_loader.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None},
        }

    def resume(self, checkpoint: Path) -> None:
        """Restore weights, optimizer, schedule, data position and RNG from ``checkpoint``."""
        state = load_state(checkpoint)
        load_weights(self.model, Path(checkpoint) / "model.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
        t = state["trainer"]
        self.step, self.samples_seen, self.tokens_seen = t["step"], t["samples_seen"], t["tokens_seen"]
        self.train_loader.load_state_dict(t["data"])
        if self.scaler and t.get("scaler"):
            self.scaler.load_state_dict(t["scaler"])
        log.info("resumed from %s at step %d", checkpoint, self.step)

    def save(self) -> Path:
        path = save_checkpoint(self.output_dir / "checkpoints" / f"step_{self.step:07d}", self.model,
                               self.run_config, self.tokenizer, self.state())
        prune_checkpoints(self.output_dir, self.cfg.keep_last)
        return path

    # ------------------------------------------------------------------------------------ loop
    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]], sums: MetricSums,
                   eager: bool = False) -> torch.Tensor | None:
        """One optimizer step over ``micro_batches``; returns the gradient norm (before clipping)
        or None when clipping is off. Each micro-batch's loss is normalized by the number of
        predictions in the whole step, so accumulation equals one large batch. ``eager`` bypasses
        ``torch.compile`` (for the step whose FLOPs are counted: a compiled module first called
        under a dispatch mode is never compiled)."""
        forward = self.model if eager else self.forward
        totals: dict[str, torch.Tensor] = {}
        for batch in micro_batches:
            for name, n in self.model.num_items(batch).items():
                totals[name] = totals[name] + n if name in totals else n
        step_loss = 0.0
        for batch in micro_batches:
            with self.autocast():
                out = forward(batch)
            loss = out.loss_over(totals)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            sums.add(out.metrics)
            step_loss = step_loss + loss.detach()
        sums.add({"loss": (step_loss, torch.ones((), device=self.device))})
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train to ``max_steps`` (or stop after step ``until``, as a preempted run would, without
        the final evaluation); returns the last logged train metrics and the final eval metrics."""
        cfg = self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        created = not self.output_dir.exists()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._fit(stop)
        except BaseException:
            if created and not list_checkpoints(self.output_dir):  # leave nothing half-written
                shutil.rmtree(self.output_dir, ignore_errors=True)
            raise

    def _fit(self, stop: int) -> dict[str, float]:
        cfg = self.cfg
        run_log = RunLog(self.output_dir)
        peak = peak_flops(self.device, self.dtype)
        sums, last = MetricSums(), {}
        batches = iter(self.train_loader)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress, desc="train",
                   dynamic_ncols=True)
        window_start, window_tokens, window_samples = time.perf_counter(), 0, 0
        self.model.train()
        try:
            while self.step < stop:
                host = [next(batches) for _ in range(cfg.accumulation_steps)]
                for b in host:
                    samples, tokens = batch_size_of(b)
                    window_samples += samples
                    window_tokens += tokens
                micro = [self.to_device(b) for b in host]
                if self.flops_per_step is None:
                    with count_flops() as counter:
                        norm = self.train_step(micro, sums, eager=True)
                    self.flops_per_step = counter.get_total_flops()
                else:
                    norm = self.train_step(micro, sums)
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    elapsed = time.perf_counter() - window_start
                    steps = self.step % cfg.log_every or cfg.log_every
                    last = sums.means()
                    last.update(lr=self.scheduler.get_last_lr()[0], samples_per_s=window_samples / elapsed,
                                tokens_per_s=window_tokens / elapsed,
                                mfu=self.flops_per_step * steps / elapsed / peak)
                    if norm is not None:
                        last["grad_norm"] = float(norm)
                    self.samples_seen += window_samples
                    self.tokens_seen += window_tokens
                    run_log.write(self.step, "train", last)
                    bar.set_postfix(loss=f"{last['loss']:.4f}" if "loss" in last else None,
                                    **({"tok/s": f"{last['tokens_per_s']:.0f}"} if window_tokens else
                                       {"samples/s": f"{last['samples_per_s']:.1f}"}))
                    window_start, window_tokens, window_samples = time.perf_counter(), 0, 0
                if self.eval_loader is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                    last.update({f"eval/{k}": v for k, v in self.evaluate(run_log).items()})
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
            if self.step == cfg.max_steps and self.eval_loader is not None and not (
                    cfg.eval_every and self.step % cfg.eval_every == 0):
                last.update({f"eval/{k}": v for k, v in self.evaluate(run_log).items()})
            if not (cfg.save_every and self.step % cfg.save_every == 0):
                self.save()
        finally:
            bar.close()
            run_log.close()
        return last

    @torch.no_grad()
    def evaluate(self, run_log: RunLog | None = None) -> dict[str, float]:
        """Mean loss and metrics over the whole held-out set (same batches every time)."""
        self.model.eval()
        sums, weights = MetricSums(), {}
        for batch in self.eval_loader.epoch_batches(0):
            with self.autocast():
                out = self.forward(self.to_device(batch))
            sums.add(out.metrics)
            weights = {name: term.weight for name, term in out.terms.items()}
        self.model.train()
        result = sums.means()
        result["loss"] = sum(w * result[f"{name}/loss"] for name, w in weights.items())
        if run_log is not None:
            run_log.write(self.step, "eval", result)
        log.info("step %d eval %s", self.step, " ".join(f"{k}={v:.4f}" for k, v in result.items()))
        return result
