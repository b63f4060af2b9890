"""The one training loop for every model (DESIGN §5): ``model(batch) -> TargetOutput``, backward,
accumulation, clipping, optimizer and schedule step; evaluation, logging and checkpoints around it.
Task behaviour (best checkpoint, early stopping, freezing) comes in as :mod:`uer.train.callbacks`."""
from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from uer.data.loader import BatchLoader
from uer.train import distributed
from uer.train.callbacks import Callback
from uer.train.checkpoint import list_checkpoints, prune_checkpoints, save_checkpoint
from uer.train.config import TrainerConfig
from uer.train.flops import Peak, count_flops
from uer.train.lock import own_output_dir
from uer.train.metrics import Evaluation, MetricSums, RunLog, Throughput, metrics_line
from uer.train.nonfinite import NonFiniteError, NonFiniteGuard
from uer.train.state import capture, restore

__all__ = ["DTYPES", "NonFiniteError", "Preempted", "Trainer", "pick_device"]
log = logging.getLogger("uer")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Preempted(Exception):
    """Raised by :meth:`Trainer.fit` after SIGTERM, once the checkpoint of the last finished step is
    written; ``uer-pretrain`` then exits with status 143 (128 + SIGTERM)."""


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Trains ``model`` for ``cfg.max_steps`` optimizer steps; :func:`uer.train.assemble.build_trainer`
    builds one from config.

    Args:
        model: a :class:`uer.models.Model` (or anything with ``forward(batch) -> TargetOutput`` and
            ``num_items(batch)``), possibly wrapped (DDP) or sharded (FSDP2) by
            :func:`uer.train.distributed.wrap`; in a multi-process run every rank builds its own Trainer.
        optimizer, scheduler: stepped once per optimizer step.
        train_loader: its position is saved in checkpoints.  cfg: the ``trainer.*`` settings.
        output_dir: checkpoints, ``metrics.jsonl`` and ``tensorboard/``.
        run_config, tokenizer: written into each checkpoint (tokenizer None for image models).
        eval_loader: held-out batches evaluated every ``cfg.eval_every`` steps and at the end.
        evaluator: ``evaluator(trainer) -> {name: value}``, task metrics (F1, exact match ...) added
            to each evaluation's loss and target metrics, or alone without ``eval_loader``.
        callbacks: :class:`~uer.train.callbacks.Callback` hooks, called in order; their state must
            depend only on ``trainer.step`` and the evaluations, so a resumed run agrees.
    """

    def __init__(self, model, optimizer, scheduler, train_loader: BatchLoader, cfg: TrainerConfig,
                 output_dir: Path, run_config, tokenizer=None, eval_loader: BatchLoader | None = None,
                 evaluator=None, callbacks: Sequence[Callback] = ()):
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
        self.evaluator, self.callbacks = evaluator, list(callbacks)
        self.dtype = DTYPES[cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.step, self.samples_seen, self.tokens_seen = 0, 0, 0
        self.flops_per_step: int | None = None
        self.guard = NonFiniteGuard(cfg, self.device, self.output_dir)
        self.window, self.peak = Throughput(), None  # this log window; the MFU peak (flops.Peak, made by fit)
        self.window_start = 0  # the step the log window started after (a resumed run starts mid-window)

    @property
    def skipped_steps(self) -> int:
        """Steps dropped so far under ``trainer.on_nonfinite=skip``."""
        return self.guard.skipped

    state = capture  # the training state written with each checkpoint
    resume = restore  # continue from a checkpoint (raises UerError for one that does not fit)

    def save(self, resumable: bool | None = None) -> Path:
        """Write the checkpoint of the current step (collective: every rank calls it), with the
        training state when ``resumable`` (default: unless ``trainer.keep_state=0``); older
        checkpoints beyond ``trainer.keep_last`` are deleted and all but the newest
        ``trainer.keep_state`` resumable ones made weights-only. Under
        ``trainer.on_nonfinite=stop`` a run that met a non-finite value raises instead, and under
        either policy so does one whose weights hold a non-finite value (checked before anything is
        written), so every checkpoint is a good one.

        Raises:
            NonFiniteError: see :mod:`uer.train.nonfinite`; the checkpoints written before stay as they were.
            UerError: the checkpoint could not be written (e.g. disk full); the previous ones stay intact.
        """
        self.guard.check()
        self.guard.check_weights(self.model, self.step)
        resumable = self.cfg.keep_state > 0 if resumable is None else resumable
        path = save_checkpoint(self.output_dir / "checkpoints" / f"step_{self.step:07d}", self.model,
                               self.run_config, self.tokenizer, self.state() if resumable else None, self.optimizer)
        if self.main:
            prune_checkpoints(self.output_dir, self.cfg.keep_last, self.cfg.keep_state)
        return path

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def grad_sync(self, sync: bool):
        """Context for one micro-batch's forward and backward: gradients are reduced over ranks only
        when ``sync`` (the last micro-batch): DDP ``no_sync``, FSDP2 ``set_requires_gradient_sync``."""
        if self.sharded:
            self.model.set_requires_gradient_sync(sync)
        elif not sync and self.wrapped is not self.model:
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]], sums: MetricSums,
                   eager: bool = False) -> torch.Tensor | None:
        """One optimizer step over ``micro_batches``; returns the gradient norm (before clipping), or
        None when the step was dropped under ``trainer.on_nonfinite=skip`` (see :mod:`uer.train.nonfinite`).
        Each micro-batch's loss is normalized by the number of predictions in the whole step on all ranks
        (counts are all-reduced; the loss is scaled by the world size because DDP and FSDP2 average
        gradients), so accumulation and data parallelism equal one large batch. ``eager`` bypasses
        ``torch.compile`` (for the FLOP-counted step: a compiled module first called under a dispatch
        mode is never compiled)."""
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
        if self.guard.drops(bad):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.update()
            return None
        self.guard.record(bad, self.step + 1)
        sums.add(step_sums.sums)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach()

    def next_step(self, batches: Iterator[dict[str, torch.Tensor]], sums: MetricSums) -> torch.Tensor | None:
        """Draw ``accumulation_steps`` micro-batches into the throughput window and take a
        :meth:`train_step` on them; the first one is run eagerly with its FLOPs counted."""
        host = [next(batches) for _ in range(self.cfg.accumulation_steps)]
        self.window.add(host)
        micro = [self.to_device(b) for b in host]
        if self.flops_per_step is not None:
            return self.train_step(micro, sums)
        with count_flops() as counter:
            norm = self.train_step(micro, sums, eager=True)
        self.flops_per_step = counter.get_total_flops()
        return norm

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train to ``max_steps`` (or stop after step ``until``, as a preempted run would, without
        the final evaluation); returns the last logged train metrics and the final eval metrics.

        Raises:
            UerError: another run holds ``trainer.output_dir`` (see :mod:`uer.train.lock`); nothing
                of it is touched.
        """
        cfg = self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        with own_output_dir(self.output_dir) as created:  # one run per output dir, for the whole run
            try:
                with distributed.StopRequest() as stop_request:
                    return self._fit(stop, stop_request)
            except BaseException:
                if created and not list_checkpoints(self.output_dir):  # leave nothing half-written
                    shutil.rmtree(self.output_dir, ignore_errors=True)
                raise

    def _fit(self, stop: int, stop_request: distributed.StopRequest) -> dict[str, float]:
        cfg = self.cfg
        run_log = RunLog(self.output_dir, self.step) if self.main else None  # rank 0 writes logs and metrics
        self.peak = Peak(self.device, self.dtype, cfg.peak_tflops)
        sums, last, batches, saved_at = MetricSums(), {}, iter(self.train_loader), self.step
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress or not self.main,
                   desc="train", dynamic_ncols=True)
        self.window.restart()
        self.window_start = self.step
        self.model.train()
        try:
            while self.step < stop and not any(c.should_stop for c in self.callbacks):
                if stop_request.requested():  # SIGTERM: keep the last finished step, then exit
                    path = self.save(resumable=True) if saved_at != self.step else None
                    raise Preempted(f"stopped by SIGTERM after step {self.step}"
                                    + (f"; checkpoint {path}" if path else ""))
                for callback in self.callbacks:
                    callback.on_step_start(self)
                norm = self.next_step(batches, sums)
                if norm is None:
                    self.guard.count_skip(self.step + 1)
                    continue
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    last = self._log_window(sums, norm, run_log, bar)
                if self.due(cfg.eval_every):
                    self._maybe_evaluate(last, run_log)
                if self.due(cfg.save_every):
                    self.save()
                    saved_at = self.step
            if self.step == cfg.max_steps and not self.due(cfg.eval_every):
                self._maybe_evaluate(last, run_log)
            if not self.due(cfg.save_every):
                self.save()
        finally:
            bar.close()
            if run_log is not None:
                run_log.close()
        return last

    def due(self, every: int) -> bool:
        """Whether the current step is a multiple of ``every`` (a ``trainer.*_every``; 0 = never)."""
        return bool(every) and self.step % every == 0

    def _log_window(self, sums: MetricSums, norm: torch.Tensor, run_log: RunLog | None, bar: tqdm) -> dict:
        """The train metrics of the steps since the last log line (summed over ranks), the learning
        rate, throughput of all ranks (samples/s, and tokens/s or, for speech, seconds of audio/s), MFU
        and the last gradient norm: written to ``metrics.jsonl``, TensorBoard and the progress bar;
        the window restarts."""
        self.guard.check()
        samples, tokens, audio, elapsed = self.window.read(self.device)
        steps = self.step - self.window_start
        distributed.all_reduce_sums(sums)
        last = sums.means()
        last.update(lr=self.scheduler.get_last_lr()[0], samples_per_s=samples / elapsed,
                    **({"audio_s_per_s": audio / elapsed} if audio else {"tokens_per_s": tokens / elapsed}),
                    mfu=self.peak.mfu(self.flops_per_step * steps / elapsed), grad_norm=float(norm))
        if self.guard.skipped:
            last["skipped_steps"] = self.guard.skipped
        self.samples_seen += samples
        self.tokens_seen += tokens
        if run_log is not None:
            run_log.write(self.step, "train", last)
        bar.set_postfix(loss=f"{last['loss']:.4f}" if "loss" in last else None,
                        **({"audio s/s": f"{last['audio_s_per_s']:.1f}"} if audio else
                           {"tok/s": f"{last['tokens_per_s']:.0f}"} if tokens else
                           {"samples/s": f"{last['samples_per_s']:.1f}"}))
        self.window.restart()
        self.window_start = self.step
        return last

    def _maybe_evaluate(self, last: dict[str, float], run_log: RunLog | None) -> None:
        """Evaluate if there is anything to (held-out batches or an evaluator), into ``last`` as ``eval/*``."""
        if self.eval_loader is not None or self.evaluator is not None:
            last.update({f"eval/{k}": v for k, v in self.evaluate(run_log).items()})

    @torch.no_grad()
    def evaluate(self, run_log: RunLog | None = None) -> dict[str, float]:
        """Mean loss and metrics over the whole held-out set (same batches every time), summed over
        ranks: each rank evaluates its share (a filler batch, computed for FSDP2's collectives,
        counts zero); then the evaluator's metrics; then each callback's ``on_evaluate``.

        Raises:
            NonFiniteError: a non-finite loss under ``trainer.on_nonfinite=stop``, or non-finite weights.
        """
        self.guard.check()
        self.guard.check_weights(self.model, self.step)  # never evaluate, nor let a callback save, broken weights
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
        self.guard.check_eval(result, self.step)
        for callback in self.callbacks:
            callback.on_evaluate(self, result)
        if run_log is not None:
            run_log.write(self.step, "eval", result)
        if self.main:
            log.info("step %d eval %s", self.step, metrics_line(result))
        return result
