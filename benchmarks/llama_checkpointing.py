"""Activation checkpointing per decoder block under FSDP2: memory and time of ``llama_mini``
pretraining with ``model.encoder.gradient_checkpointing`` off and on, two processes.

First the script shows how ``trainer.strategy=fsdp2`` shards the model: it wraps a ``llama_mini``
with :func:`uer.train.distributed.wrap` in a one-process gloo group and lists the modules that became
``FSDPModule`` (each decoder block, then the root). Then it runs the real command twice per round,
checkpointing off and on (the order flipping every round)::

    uer-torchrun --nproc_per_node=2 -m uer.cli.pretrain +model=llama_mini trainer.strategy=fsdp2 \\
        model.encoder.gradient_checkpointing=<false|true> data.batch_size=<B> trainer.max_steps=<N> ...

on gloo (CPU), each in a fresh output directory (the preprocessed corpus is cached after the first
run), and reports the peak ``RssAnon`` of the process tree (sampled from ``/proc``: memory the
processes own, shared libraries and mapped files aside) and the tokens/s of the last log window
from ``metrics.jsonl`` (all ranks together; the first window, with start-up, is not counted).

Run: ``python benchmarks/llama_checkpointing.py`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from process_memory import run_sampled
from torch.distributed.fsdp import FSDPModule

from uer.config import compose_config
from uer.models import build_model
from uer.train.distributed import wrap


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="llama_mini")
    p.add_argument("--batch", type=int, default=16, help="data.batch_size per process")
    p.add_argument("--steps", type=int, default=8, help="trainer.max_steps; the last half is timed")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    args = p.parse_args()
    if args.steps < 2 or args.steps % 2 or min(args.batch, args.rounds) < 1:
        p.error("--steps must be even and >= 2; --batch and --rounds >= 1")
    return args


def sharded_modules(preset: str) -> list[str]:
    """Names of the modules ``trainer.strategy=fsdp2`` turns into ``FSDPModule`` ("" = the root)."""
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            model = wrap(build_model(compose_config([f"+model={preset}", "model.vocab_size=8000"]).model), "fsdp2",
                         torch.device("cpu"))
            return [name for name, module in model.named_modules() if isinstance(module, FSDPModule)]
        finally:
            dist.destroy_process_group()


def run(args, checkpointing: bool, workdir: Path) -> dict:
    """One 2-process FSDP2 pretraining run; returns peak tree RssAnon (bytes), wall seconds and the
    last window's tokens/s.

    Raises:
        SystemExit: the command failed (its last output lines are in the message).
    """
    out = Path(tempfile.mkdtemp(dir=workdir))
    command = [str(Path(sys.executable).parent / "uer-torchrun"), "--nproc_per_node=2", "-m", "uer.cli.pretrain",
               f"+model={args.preset}", "trainer.strategy=fsdp2", f"model.encoder.gradient_checkpointing={str(checkpointing).lower()}",
               f"data.batch_size={args.batch}", f"trainer.max_steps={args.steps}", f"trainer.log_every={args.steps // 2}",
               "trainer.eval_every=0", f"trainer.save_every={args.steps}", "trainer.progress=false",
               f"trainer.output_dir={out / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = run_sampled(command, env, args.interval)
    if run.returncode != 0:
        raise SystemExit(f"the run failed:\n{chr(10).join((run.stdout + run.stderr).strip().splitlines()[-8:])}")
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["split"] == "train"][-1]
    return {"peak": run.peak_anon, "seconds": run.seconds, "tokens_per_s": last["tokens_per_s"], "loss": last["loss"]}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"trainer.strategy=fsdp2 shards these modules of {args.preset}: {sharded_modules(args.preset)} "
          "('' = the root)")
    print(f"{args.preset}, 2 processes (gloo, 1 thread each), data.batch_size={args.batch} per process, "
          f"{args.steps} steps; CPU: {os.cpu_count()} logical cores, load average before: {os.getloadavg()[0]:.2f}")
    results: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="uer-ckpt-") as tmp:
        for r in range(args.rounds):
            for flag in (False, True) if r % 2 == 0 else (True, False):
                results[flag].append(run(args, flag, Path(tmp)))
                res = results[flag][-1]
                print(f"  checkpointing {'on ' if flag else 'off'}: peak RssAnon {res['peak'] / 2**20:6.0f} MiB, "
                      f"{res['tokens_per_s']:7.0f} tokens/s (last window), {res['seconds']:5.0f} s wall, "
                      f"loss {res['loss']:.4f}", flush=True)
    median = {flag: {k: statistics.median(x[k] for x in v) for k in ("peak", "tokens_per_s")}
              for flag, v in results.items()}
    print(f"checkpointing on / off: peak memory {median[True]['peak'] / median[False]['peak']:.2f}x, "
          f"tokens/s {median[True]['tokens_per_s'] / median[False]['tokens_per_s']:.2f}x; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
