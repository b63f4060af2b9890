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
from uer.errors import UerError
from uer.train import distributed
from uer.train.checkpoint import (
    list_checkpoints,
    load_sharded,
    load_state,
    load_weights,
    prune_checkpoints,
    save_checkpoint,
)
from uer.train.config import TrainerConfig
from uer.train.flops import count_flops, peak_flops
from uer.train.metrics import Evaluation, MetricSums, RunLog

log = logging.getLogger("uer")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_STEP = 2**62


class Preempted(Exception):
    """Raised by :meth:`Trainer.fit` after SIGTERM, once the checkpoint of the last finished step is
    written; ``uer-pretrain`` then exits with status 143 (128 + SIGTERM)."""


class NonFiniteError(UerError):
    """A non-finite loss or gradient norm under ``trainer.on_nonfinite=stop``, or too many skipped steps in a
    row under ``skip``."""


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
            ``num_items(batch)``), possibly wrapped by :func:`uer.train.distributed.wrap` (DDP) or
            sharded by it (FSDP2); in a multi-process run every rank builds its own Trainer.
        optimizer, scheduler: stepped once per optimizer step.
        train_loader: a :class:`BatchLoader`; its position is saved in checkpoints.
        cfg: the ``trainer.*`` settings.
        output_dir: where checkpoints, ``metrics.jsonl`` and ``tensorboard/`` go.
        run_config: the resolved config written into each checkpoint.
        tokenizer: saved into each checkpoint (None for image models).
        eval_loader: held-out batches evaluated every ``cfg.eval_every`` steps and at the end.
        evaluator: ``evaluator(trainer) -> {name: value}``, task metrics (F1, exact match ...) added
            to each evaluation's loss and target metrics; with no ``eval_loader``, evaluations run
            the evaluator alone (one that computes the loss in its own pass over the data).
        best_metric: an evaluation metric (higher is better); each evaluation that improves it
            writes a weights-only checkpoint to ``output_dir/best``.
        patience: with ``best_metric``, stop after this many evaluations without improvement (0 = never).
        before_step: ``hook(trainer)`` called before every optimizer step (e.g. freezing parameters
            for the first N steps: it must depend on ``trainer.step`` only, so a resumed run agrees).
    """

    def __init__(self, model, optimizer, scheduler, train_loader: BatchLoader, cfg: TrainerConfig,
                 output_dir: Path, run_config, tokenizer=None, eval_loader: BatchLoader | None = None,
                 evaluator=None, best_metric: str | None = None, patience: int = 0, before_step=()):
        self.cfg, self.output_dir = cfg, Path(output_dir)
        self.device = distributed.init(pick_device(cfg.device))
        self.wrapped = model.to(self.device)  # what runs forward: DDP, FSDP2 or the plain model
        self.model = distributed.unwrap(model)
        self.forward = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.world, self.main = distributed.world_size(), distributed.is_main()
        self.sharded = distributed.is_sharded(self.model)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.run_config, self.tokenizer = run_config, tokenizer
        self.dtype = DTYPES[cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.step, self.samples_seen, self.tokens_seen, self.skipped_steps = 0, 0, 0, 0
        self.flops_per_step: int | None = None
        self.nonfinite_step = torch.tensor(NO_STEP, device=self.device)  # first bad step (on_nonfinite=stop)
        self.evaluator, self.best_metric, self.patience = evaluator, best_metric, patience
        self.before_step = before_step
        self.best: tuple[int, float] | None = None  # (step, value) of the best evaluation so far
        self.stale, self.stopped = 0, False  # evaluations since the best; early stop requested

    # ----------------------------------------------------------------------------------- state
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        return {
            "optimizer": None if self.sharded else self.optimizer.state_dict(),  # sharded: saved by DCP
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "trainer": {"step": self.step, "samples_seen": self.samples_seen, "tokens_seen": self.tokens_seen,
                        "skipped_steps": self.skipped_steps, "data": self.train_loader.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None},
        }

    def resume(self, checkpoint: Path) -> None:
        """Restore weights, optimizer, schedule, data position and RNG from ``checkpoint``. Sharded
        (FSDP2) checkpoints load into any number of processes; the RNG of a rank the checkpoint had
        no process for keeps its fresh seed (only dropout draws then differ from the original run).

        Raises:
            UerError: no complete training state, a DDP checkpoint resumed under FSDP2, or a data
                position saved with another seed or global batch size.
        """
        checkpoint = Path(checkpoint)
        state = load_state(checkpoint, distributed.rank())
        if state["optimizer"] is None:
            load_sharded(checkpoint, self.model, self.optimizer)
        elif self.sharded:
            raise UerError(f"{checkpoint}: written without trainer.strategy=fsdp2, so it cannot resume a "
                           "sharded run; resume with trainer.strategy=ddp or start from it with trainer.init_from")
        else:
            load_weights(self.model, checkpoint / "model.safetensors")
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["rng"] is None:
            log.warning("rank %d: %s has no RNG state for this rank (saved by fewer processes)",
                        distributed.rank(), checkpoint)
        else:
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
        t = state["trainer"]
        self.step, self.samples_seen, self.tokens_seen = t["step"], t["samples_seen"], t["tokens_seen"]
        self.skipped_steps = t.get("skipped_steps", 0)
        try:
            self.train_loader.load_state_dict(t["data"])
        except ValueError as e:
            raise UerError(f"{checkpoint}: {e}") from None
        if self.scaler and t.get("scaler"):
            self.scaler.load_state_dict(t["scaler"])
        log.info("resumed from %s at step %d", checkpoint, self.step)

    def save(self) -> Path:
        """Write the checkpoint of the current step (collective: every rank calls it). Under
        ``trainer.on_nonfinite=stop`` a run that met a non-finite value raises instead, so the last
        checkpoint is always a good one."""
        self.check_finite()
        path = save_checkpoint(self.output_dir / "checkpoints" / f"step_{self.step:07d}", self.model,
                               self.run_config, self.tokenizer, self.state(), self.optimizer)
        if self.main:
            prune_checkpoints(self.output_dir, self.cfg.keep_last)
        return path

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteError` (on every rank) if a step since the start met a non-finite
        loss or gradient norm. Called where values are read anyway (log steps, saves, the end), so
        the ``stop`` policy costs no host sync per step.

        Raises:
            NonFiniteError: naming the first bad step and the last good checkpoint.
        """
        if self.cfg.on_nonfinite != "stop":
            return
        bad = int(distributed.all_reduce_(self.nonfinite_step.clone(), distributed.dist.ReduceOp.MIN))
        if bad != NO_STEP:
            raise NonFiniteError(f"step {bad}: non-finite loss or gradient norm (trainer.on_nonfinite=stop); "
                                 f"last good checkpoint: {self.last_checkpoint()}")

    def count_skip(self, in_a_row: int) -> None:
        """Count and log a step dropped under ``trainer.on_nonfinite=skip``.

        Raises:
            NonFiniteError: ``in_a_row`` reached ``trainer.max_consecutive_skips`` (0 = no limit).
        """
        self.skipped_steps += 1
        log.warning("step %d: non-finite loss or gradient norm; step skipped (%d so far, trainer.on_nonfinite=skip)",
                    self.step + 1, self.skipped_steps)
        limit = self.cfg.max_consecutive_skips
        if limit and in_a_row >= limit:
            raise NonFiniteError(f"step {self.step + 1}: {in_a_row} batches in a row gave a non-finite loss or "
                                 f"gradient norm (trainer.max_consecutive_skips={limit}); the weights are likely "
                                 f"broken; last good checkpoint: {self.last_checkpoint()}")

    def last_checkpoint(self) -> str:
        """The newest complete checkpoint of this run, or ``none``."""
        found = list_checkpoints(self.output_dir)
        return str(found[-1]) if found else "none"

    # ------------------------------------------------------------------------------------ loop
    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def grad_sync(self, sync: bool):
        """Context for one micro-batch's forward and backward: gradients are reduced over ranks
        only when ``sync`` (the step's last micro-batch): DDP ``no_sync``, FSDP2
        ``set_requires_gradient_sync``."""
        if self.sharded:
            self.model.set_requires_gradient_sync(sync)
        elif not sync and self.wrapped is not self.model:
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]], sums: MetricSums,
                   eager: bool = False) -> torch.Tensor | None:
        """One optimizer step over ``micro_batches``; returns the gradient norm (before clipping),
        or None when the step was dropped for a non-finite loss or gradient norm
        (``trainer.on_nonfinite=skip``: no optimizer or schedule step; one host read per step).
        Each micro-batch's loss is normalized by the number of predictions in the whole step on all
        ranks (counts are all-reduced; the loss is scaled by the world size because DDP and FSDP2
        average gradients), so accumulation and data parallelism equal one large batch. ``eager``
        bypasses ``torch.compile`` (for the step whose FLOPs are counted: a compiled module first
        called under a dispatch mode is never compiled)."""
        forward = self.wrapped if eager else self.forward
        totals: dict[str, torch.Tensor] = {}
        for batch in micro_batches:
            for name, n in self.model.num_items(batch).items():
                totals[name] = totals[name] + n if name in totals else n
        if self.world > 1:
            names = list(totals)
            totals = dict(zip(names, distributed.all_reduce_(torch.stack([totals[n] for n in names]))))
        step_sums, step_loss = MetricSums(), 0.0
        for i, batch in enumerate(micro_batches):
            with self.grad_sync(i == len(micro_batches) - 1):
                with self.autocast():
                    out = forward(batch)
                loss = out.loss_over(totals)
                scaled = loss * self.world if self.world > 1 else loss
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            step_sums.add(out.metrics)
            step_loss = step_loss + loss.detach()
        # summed over ranks at log time: Σ world · (this rank's share) / (world · 1) = the global mean
        step_sums.add({"loss": (step_loss * self.world, torch.ones((), device=self.device))})
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.cfg.grad_clip, norm)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor
        bad = ~torch.isfinite(step_loss) if self.scaler else ~(torch.isfinite(step_loss) & torch.isfinite(norm))
        if self.cfg.on_nonfinite == "skip" and bool(distributed.all_reduce_(bad.int(), distributed.dist.ReduceOp.MAX)):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.update()
            return None
        self.nonfinite_step = torch.where(bad & (self.nonfinite_step == NO_STEP), self.step + 1, self.nonfinite_step)
        sums.add({name: (total, count) for name, (total, count) in step_sums.sums.items()})
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach()

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train to ``max_steps`` (or stop after step ``until``, as a preempted run would, without
        the final evaluation); returns the last logged train metrics and the final eval metrics."""
        cfg = self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        created = not self.output_dir.exists()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            with distributed.StopRequest() as stop_request:
                return self._fit(stop, stop_request)
        except BaseException:
            if created and self.main and not list_checkpoints(self.output_dir):  # leave nothing half-written
                shutil.rmtree(self.output_dir, ignore_errors=True)
            raise

    def _fit(self, stop: int, stop_request: distributed.StopRequest) -> dict[str, float]:
        cfg = self.cfg
        run_log = RunLog(self.output_dir) if self.main else None  # rank 0 writes logs and metrics
        peak = peak_flops(self.device, self.dtype)
        sums, last = MetricSums(), {}
        batches = iter(self.train_loader)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress or not self.main,
                   desc="train", dynamic_ncols=True)
        window_start, window_tokens, window_samples = time.perf_counter(), 0, 0
        saved_at, skipped_in_a_row = self.step, 0
        self.model.train()
        try:
            while self.step < stop and not self.stopped:
                if stop_request.requested():  # SIGTERM: keep the last finished step, then exit
                    path = self.save() if saved_at != self.step else None
                    raise Preempted(f"stopped by SIGTERM after step {self.step}"
                                    + (f"; checkpoint {path}" if path else ""))
                for hook in self.before_step:
                    hook(self)
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
                if norm is None:
                    skipped_in_a_row += 1
                    self.count_skip(skipped_in_a_row)
                    continue
                skipped_in_a_row = 0
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self.check_finite()
                    elapsed = time.perf_counter() - window_start
                    steps = self.step % cfg.log_every or cfg.log_every
                    if self.world > 1:  # throughput of all ranks together
                        counts = torch.tensor([window_samples, window_tokens], device=self.device)
                        window_samples, window_tokens = distributed.all_reduce_(counts).tolist()
                    distributed.all_reduce_sums(sums)
                    last = sums.means()
                    last.update(lr=self.scheduler.get_last_lr()[0], samples_per_s=window_samples / elapsed,
                                tokens_per_s=window_tokens / elapsed,
                                mfu=self.flops_per_step * steps / elapsed / peak, grad_norm=float(norm))
                    if self.skipped_steps:
                        last["skipped_steps"] = self.skipped_steps
                    self.samples_seen += window_samples
                    self.tokens_seen += window_tokens
                    if run_log is not None:
                        run_log.write(self.step, "train", last)
                    bar.set_postfix(loss=f"{last['loss']:.4f}" if "loss" in last else None,
                                    **({"tok/s": f"{last['tokens_per_s']:.0f}"} if window_tokens else
                                       {"samples/s": f"{last['samples_per_s']:.1f}"}))
                    window_start, window_tokens, window_samples = time.perf_counter(), 0, 0
                if self.evaluates and cfg.eval_every and self.step % cfg.eval_every == 0:
                    last.update({f"eval/{k}": v for k, v in self.evaluate(run_log).items()})
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
                    saved_at = self.step
            if self.step == cfg.max_steps and self.evaluates and not (
                    cfg.eval_every and self.step % cfg.eval_every == 0):
                last.update({f"eval/{k}": v for k, v in self.evaluate(run_log).items()})
            if not (cfg.save_every and self.step % cfg.save_every == 0):
                self.save()
        finally:
            bar.close()
            if run_log is not None:
                run_log.close()
        return last

    def track_best(self, result: dict[str, float]) -> None:
        """Keep the weights of the best evaluation by ``best_metric`` in ``output_dir/best``; request
        an early stop after ``patience`` evaluations without improvement.

        Raises:
            KeyError: ``best_metric`` is not among the evaluation's metrics (the message lists them).
        """
        if self.best_metric not in result:
            raise KeyError(f"best metric {self.best_metric!r} is not an evaluation metric; have {sorted(result)}")
        value = result[self.best_metric]
        if self.best is None or value > self.best[1]:
            self.best, self.stale = (self.step, value), 0
            save_checkpoint(self.output_dir / "best", self.model, self.run_config, self.tokenizer, None)
            log.info("step %d: best %s=%.4f so far, saved to %s", self.step, self.best_metric, value,
                     self.output_dir / "best")
        else:
            self.stale += 1
            self.stopped = bool(self.patience) and self.stale >= self.patience
            if self.stopped:
                log.info("early stop at step %d: %s has not improved on %.4f (step %d) for %d evaluations",
                         self.step, self.best_metric, self.best[1], self.best[0], self.stale)

    @property
    def evaluates(self) -> bool:
        """Whether the run has anything to evaluate: held-out batches or an evaluator."""
        return self.eval_loader is not None or self.evaluator is not None

    @torch.no_grad()
    def evaluate(self, run_log: RunLog | None = None) -> dict[str, float]:
        """Mean loss and metrics over the whole held-out set (same batches every time), summed over
        ranks: each rank evaluates its share (a filler batch, computed for FSDP2's collectives,
        counts zero); then the evaluator's metrics."""
        self.check_finite()
        result = {}
        if self.eval_loader is not None:
            self.model.eval()
            forward = self.model if self.wrapped is not self.model else self.forward  # DDP: no collectives
            evaluation = Evaluation()
            filler = len(self.eval_loader) - 1 if self.eval_loader.last_is_filler() else -1
            for i, batch in enumerate(self.eval_loader.epoch_batches(0)):
                with self.autocast():
                    evaluation.add(forward(self.to_device(batch)), counted=i != filler)
            self.model.train()
            distributed.all_reduce_sums(evaluation.sums)
            result = evaluation.result()
        if self.evaluator is not None:
            result.update(self.evaluator(self))
            self.model.train()
        if self.best_metric is not None:
            self.track_best(result)
        if run_log is not None:
            run_log.write(self.step, "eval", result)
        if self.main:
            log.info("step %d eval %s", self.step, " ".join(f"{k}={v:.4f}" for k, v in result.items()))
        return result
