"""End to end: the real ``uer-pretrain`` command against the Hugging Face ``Trainer`` on a real corpus.

Both sides train BERT (MLM + NSP, ``--preset``, bert_mini by default) from the same NSP instances:
``uer-preprocess data=bert`` turns ``--corpus`` (CLUECorpusSmall_bert_sampled.txt, the BERT
document format) into ``[CLS] A [SEP] B [SEP]`` rows with segment ids and NSP labels, once. Then:

- **uer**: ``uer-pretrain +model=<preset> data.dataset=<those rows> data.tokenizer=<--vocab>`` as a
  user runs it (its loader pads each batch to its longest row and masks it dynamically, 15%, 80/10/10).
- **transformers**: the run_mlm-style script a user would write instead: ``Trainer`` with
  ``BertForPreTraining`` (same config as ``benchmarks/peers.py`` builds, SDPA) and
  ``DataCollatorForLanguageModeling`` (``BertTokenizerFast`` of the same vocabulary; pads each batch to
  its longest row, masks 15%, 80/10/10) over the same rows (``next_sentence_label`` passes through).

Same batch, sequence length, AdamW (lr, betas, eps, weight decay 0.01, fused), linear schedule with
10% warmup, gradient clipping at 1.0, loss logged every ``--log-every`` steps, no evaluation and no
checkpoint inside the timed window. Each run is its own process (``OMP_NUM_THREADS=--threads``).

Rate: samples/s = ``batch · (steps − warmup) / (t_steps − t_warmup)``, where ``t_k`` is the wall
clock when step k has finished (uer: the ``time`` of ``metrics.jsonl``'s line at step k, written
right after that step; transformers: ``on_step_end`` of a callback). The window holds the data
loading, collation and masking of its steps, the optimizer, the schedule and the logging: the steady
state after ``--warmup`` steps (process start, dataset loading and the first compiled or FLOP-counted
step excluded on both sides). tokens/s = samples/s × the mean real (non-padding) tokens per row of
the dataset, the same factor for both sides. Sides alternate within each round (the order flips
every round); each round's uer/transformers ratio is measured minutes apart on the same machine.
Each run's peak resident memory is GNU ``/usr/bin/time -v``'s maximum RSS of the process.

Run: ``python benchmarks/pretrain_e2e.py`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Side, environment, summary
from datasets import load_from_disk
from peers import bert_peer
from transformers import BertTokenizerFast, DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from uer.config import compose_config, resolve
from uer.data.masking import MaskedLm
from uer.data.tokenizer import Tokenizer
from uer.models import build_model
from uer.train.config import OptimConfig, validated

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BIN = Path(sys.executable).parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="bert_mini", help="a bert_* preset (MLM + NSP)")
    p.add_argument("--corpus", default=str(SHARED / "corpora" / "CLUECorpusSmall_bert_sampled.txt"))
    p.add_argument("--vocab", default=str(SHARED / "vocab" / "google_zh_vocab.txt"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="steps per run (warmup included)")
    p.add_argument("--warmup", type=int, default=10, help="steps before the timed window")
    p.add_argument("--log-every", type=int, default=10, help="loss logging interval on both sides")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="add a side: uer-pretrain trainer.compile=true")
    p.add_argument("--workdir", help="keeps the dataset and the runs (default: a temporary folder)")
    p.add_argument("--alternate-steps", action="store_true",
                   help="instead: both models in this process, one training step each in turn on the same real batches")
    p.add_argument("--hf-run", help=argparse.SUPPRESS)  # internal: run the transformers side into this dir
    args = p.parse_args(argv)
    runs = not args.alternate_steps and not args.hf_run
    if runs and (not 0 < args.warmup < args.steps or args.steps % args.log_every or args.warmup % args.log_every):
        p.error("need 0 < warmup < steps, both multiples of --log-every")
    return args


def preprocess(args, work: Path) -> Path:
    """The NSP instances of the corpus (``uer-preprocess data=bert``), built once into ``work``."""
    out = work / "dataset"
    if not (out / "uer_dataset.json").exists():
        subprocess.run([str(BIN / "uer-preprocess"), "data=bert", f"data.corpus={args.corpus}",
                        f"data.tokenizer={args.vocab}", f"data.seq_length={args.seq}", f"output={out}"],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def launch(cmd: list[str], args) -> float:
    """Run ``cmd`` with ``OMP_NUM_THREADS=--threads`` under ``/usr/bin/time -v``; returns its peak
    resident memory (GB, GNU time's "Maximum resident set size").

    Raises:
        SystemExit: the command failed (with the end of its output).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], check=False, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    kbytes = next(line for line in done.stderr.splitlines() if "Maximum resident set size" in line)
    return int(kbytes.rsplit(":", 1)[1]) / 2**20


def run_uer(args, dataset: Path, run_dir: Path, precision: str, compile_: bool) -> tuple[float, float]:
    """One ``uer-pretrain`` run; returns its steady-state samples/s (see the module docstring) and
    peak resident memory (GB)."""
    cmd = [str(BIN / "uer-pretrain"), f"+model={args.preset}", f"data.dataset={dataset}", f"data.tokenizer={args.vocab}",
           f"data.batch_size={args.batch}", f"data.seq_length={args.seq}", f"trainer.precision={precision}",
           f"trainer.max_steps={args.steps}", f"trainer.log_every={args.log_every}", "trainer.eval_every=0",
           f"trainer.save_every={args.steps}", "trainer.progress=false", f"trainer.output_dir={run_dir}",
           f"trainer.compile={str(compile_).lower()}"]
    peak = launch(cmd, args)
    times = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "train":
            times[row["step"]] = row["time"]
    return args.batch * (args.steps - args.warmup) / (times[args.steps] - times[args.warmup]), peak


def run_hf(args, dataset: Path, run_dir: Path, precision: str) -> tuple[float, float]:
    """The transformers side in its own process (this script with ``--hf-run``)."""
    cmd = [sys.executable, __file__, "--hf-run", str(run_dir), "--precision", precision, "--preset", args.preset,
           "--vocab", args.vocab, "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--log-every", str(args.log_every), "--workdir", str(dataset.parent)]
    peak = launch(cmd, args)
    times = json.loads((run_dir / "step_times.json").read_text())
    return args.batch * (args.steps - args.warmup) / (times[str(args.steps)] - times[str(args.warmup)]), peak


def hf_side(args) -> None:
    """Train ``BertForPreTraining`` with ``Trainer`` + ``DataCollatorForLanguageModeling``; write the
    wall clock at the end of every step to ``<run>/step_times.json``."""
    run_dir = Path(args.hf_run)
    tokenizer = BertTokenizerFast(vocab=args.vocab)  # transformers 5: the vocab.txt path
    cfg = compose_config([f"+model={args.preset}"])
    cfg.model.vocab_size = len(tokenizer)
    model, _ = bert_peer(resolve(cfg.model))
    rows = load_from_disk(str(Path(args.workdir) / "dataset"))
    rows = rows.select_columns(["input_ids", "token_type_ids", "next_sentence_label"])
    optim, sched = cfg.optim, cfg.scheduler
    times: dict[int, float] = {}

    class StepTimes(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            times[state.global_step] = time.time()

    training = TrainingArguments(
        output_dir=str(run_dir), max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=optim.lr, adam_beta1=optim.betas[0], adam_beta2=optim.betas[1], adam_epsilon=optim.eps,
        weight_decay=optim.weight_decay, lr_scheduler_type="linear", warmup_steps=round(sched.warmup_ratio * args.steps),
        max_grad_norm=1.0, logging_steps=args.log_every, save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True, bf16=args.precision[0] == "bf16", dataloader_drop_last=True, seed=42)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    torch.manual_seed(42)
    Trainer(model=model, args=training, train_dataset=rows, data_collator=collator, callbacks=[StepTimes()]).train()
    (run_dir / "step_times.json").write_text(json.dumps(times))


def alternate_steps(args, dataset: Path, precision: str) -> dict[str, list[float]]:
    """A check that load swings cannot skew: uer's model and ``BertForPreTraining`` (same config) in
    this process, one step each in turn (the order flipping every step) on the same batches of the
    dataset, padded and masked by uer's collator for both; a step is forward (autocast in bf16),
    backward, clipping at 1.0, fused AdamW, zero_grad. Returns the seconds of each timed step per
    side (``--steps`` batches after one untimed step each)."""
    torch.set_num_threads(args.threads)
    tokenizer = Tokenizer.load(args.vocab)
    cfg = compose_config([f"+model={args.preset}"])
    cfg.model.vocab_size = tokenizer.vocab_size
    torch.manual_seed(42)
    uer_model = build_model(cfg.model)
    hf_model, hf_loss = bert_peer(resolve(cfg.model))
    sides = {"uer": Side("uer", uer_model, validated(cfg.optim, OptimConfig, "optim"), lambda b: uer_model(b).loss, len),
             "transformers": Side("transformers", hf_model, validated(cfg.optim, OptimConfig, "optim"), hf_loss, len)}
    rows, collate = load_from_disk(str(dataset)), MaskedLm(tokenizer)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.steps + 1):
        index = list(range(i * args.batch, (i + 1) * args.batch))
        columns = rows.select_columns(["input_ids", "token_type_ids", "next_sentence_label"])[index]
        batch = collate(columns, [np.random.default_rng([42, j]) for j in index])
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            start = time.perf_counter()
            sides[name].forward_backward(batch, precision)
            torch.nn.utils.clip_grad_norm_(sides[name].model.parameters(), 1.0)
            sides[name].optimizer.step()
            sides[name].optimizer.zero_grad(set_to_none=True)
            if i:
                times[name].append(time.perf_counter() - start)
    return times


def mean_tokens(dataset: Path) -> float:
    """Mean real tokens per row of the dataset (the factor from samples/s to tokens/s)."""
    lengths = [len(r) for r in load_from_disk(str(dataset))["input_ids"]]
    return sum(lengths) / len(lengths)


def main() -> None:
    args = parse_args()
    if args.hf_run:
        return hf_side(args)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pretrain_e2e_"))
    work.mkdir(parents=True, exist_ok=True)
    dataset = preprocess(args, work)
    tokens = mean_tokens(dataset)
    print(environment(args.threads) + f"; load average at start {os.getloadavg()[0]:.1f}")
    print(f"{args.preset}, MLM + NSP, {Path(args.corpus).name} -> {dataset} ({tokens:.1f} real tokens per row on "
          f"average), vocabulary {Path(args.vocab).name}; batch {args.batch} x {args.seq}; " + (
              f"{args.steps} steps per side" if args.alternate_steps else
              f"{args.steps} steps per run, timed: steps {args.warmup + 1}-{args.steps}; {args.rounds} rounds, "
              f"order flipping; OMP_NUM_THREADS={args.threads}"))
    if args.alternate_steps:
        for precision in args.precision:
            times = alternate_steps(args, dataset, precision)
            rates = {name: [args.batch / t for t in values] for name, values in times.items()}
            ratios = [h / u for u, h in zip(times["uer"], times["transformers"])]
            print(f"[{precision}] one step each in turn, {args.steps} steps; samples/s median (steps); "
                  f"load average now {os.getloadavg()[0]:.1f}")
            for name, values in rates.items():
                print(f"  {name:<13} {summary(values)}")
            print(f"  ratio uer / transformers per step: median {statistics.median(ratios):.2f}x, "
                  f"total time {sum(times['transformers']) / sum(times['uer']):.2f}x")
        return None
    for precision in args.precision:
        sides = {"uer": lambda d, p=precision: run_uer(args, dataset, d, p, False)}
        if args.compile:
            sides["uer compiled"] = lambda d, p=precision: run_uer(args, dataset, d, p, True)
        sides["transformers"] = lambda d, p=precision: run_hf(args, dataset, d, p)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        peaks: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                run_dir = work / f"{precision}-{name.replace(' ', '_')}-{r}-{time.time_ns()}"
                rate, peak = sides[name](run_dir)
                rates[name].append(rate)
                peaks[name].append(peak)
        print(f"[{precision}] samples/s median (rounds), tokens/s, peak RSS; load average now {os.getloadavg()[0]:.1f}")
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"  {name:<13} {summary(values)} samples/s, {median * tokens:8.0f} tokens/s, "
                  f"peak RSS {max(peaks[name]):.2f} GB")
        for name in list(sides)[:-1]:
            per_round = [u / h for u, h in zip(rates[name], rates["transformers"])]
            print(f"  ratio {name} / transformers: {statistics.median(per_round):.2f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in per_round)})")


if __name__ == "__main__":
    main()
