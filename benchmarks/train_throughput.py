"""Training throughput and MFU of uer's BERT against ``transformers.BertForPreTraining``.

Both models get the same config (widths, vocabulary, 512 positions, dropout 0.1 in train mode, exact
GELU, LayerNorm eps), the same batches and the same optimizer (uer's AdamW over two parameter groups),
in the same process. A step is forward, backward, AdamW step and zero_grad; bf16 wraps the forward in
``torch.autocast("cpu", dtype=torch.bfloat16)`` as uer's trainer does. The two sides alternate in
interleaved rounds (the order flips every round) and the median round is reported, so machine noise
hits both alike.

FLOPs per step are counted with ``uer.train.flops.count_flops`` (forward + backward, every matmul
actually executed) for each model, and MFU is achieved FLOP/s over ``uer.train.flops.peak_flops``
measured in the same run. uer computes the MLM head only at masked positions while transformers
computes it at every position: a real difference of the implementations, kept and shown in the FLOPs.

Run: ``python benchmarks/train_throughput.py`` (bert_mini, batch 32, sequence 128, fp32 and bf16).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch
import transformers
from omegaconf import DictConfig
from transformers import BertConfig, BertForPreTraining

from uer.config import compose_config, resolve
from uer.data.masking import MlmCollator
from uer.models import build_model
from uer.train.config import OptimConfig, validated
from uer.train.flops import count_flops, peak_flops
from uer.train.optim import build_optimizer

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}  # layout of uer's shipped KJV WordPiece
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="bert_mini", help="a BERT preset: bert_tiny, bert_mini, bert_base")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per side per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side per precision")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--vocab-size", type=int, default=8000,
                   help="8000 = the tokenizer shipped with uer (the default of uer-pretrain)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if min(args.batch, args.steps, args.rounds, args.threads) < 1 or args.warmup < 0 or args.seq < 5:
        p.error("batch, steps, rounds and threads must be >= 1, warmup >= 0, seq >= 5")
    return args


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or ``platform.processor()`` where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_batches(n: int, batch: int, seq: int, vocab_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``n`` full-length NSP batches: ``[CLS] A [SEP] B [SEP]`` of random ordinary ids (A's length
    random), ``token_type_ids`` 0 for A and 1 for B, random ``next_sentence_label``, masked by uer's
    :class:`~uer.data.masking.MlmCollator` (15%, 80/10/10, one ``numpy`` generator per row).

    Returns:
        dicts of ``input_ids``, ``labels``, ``token_type_ids`` (B, S) int64 and ``next_sentence_label``
        (B,); no ``attention_mask`` since no row is padded.
    """
    rng = np.random.default_rng(seed)
    collator = MlmCollator(list(SPECIALS.values()), SPECIALS["pad"], SPECIALS["mask"], vocab_size, 0.15)
    out = []
    for b in range(n):
        rows: dict[str, list] = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
        for _ in range(batch):
            a = int(rng.integers(1, seq - 3))  # A gets a tokens, B the remaining seq - 3 - a
            ids = rng.integers(len(SPECIALS), vocab_size, seq - 3).tolist()
            rows["input_ids"].append([SPECIALS["cls"], *ids[:a], SPECIALS["sep"], *ids[a:], SPECIALS["sep"]])
            rows["token_type_ids"].append([0] * (a + 2) + [1] * (seq - a - 2))
            rows["next_sentence_label"].append(int(rng.integers(0, 2)))
        rngs = [np.random.default_rng([seed, b, i]) for i in range(batch)]
        out.append(collator(rows, rngs))
    return out


def hf_config(model: DictConfig) -> BertConfig:
    """The ``BertConfig`` (SDPA attention) equal to a resolved uer BERT model config.

    Raises:
        SystemExit: the preset is not a post-LN MLM+NSP BERT that ``BertForPreTraining`` can match.
    """
    enc, target = model.encoder, model.target
    if not ("mlm" in target and "sp" in target and enc.norm_position == "post" and enc.norm == "layernorm"
            and not enc.gated_ffn and enc.mask == "fully_visible" and model.emb_dim == model.dim):
        raise SystemExit(f"preset {model.name} is not a BERT (MLM + NSP, post-LN) that BertForPreTraining matches")
    act = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu"}[enc.activation]
    return BertConfig(vocab_size=model.vocab_size, hidden_size=model.dim, num_hidden_layers=model.num_layers,
                      num_attention_heads=model.num_heads, intermediate_size=model.ffn_dim, hidden_act=act,
                      hidden_dropout_prob=model.dropout, attention_probs_dropout_prob=enc.attention_dropout,
                      max_position_embeddings=model.max_seq_length, type_vocab_size=2,
                      layer_norm_eps=model.norm_eps, initializer_range=model.init_std,
                      pad_token_id=SPECIALS["pad"], attn_implementation="sdpa")


class Side:
    """One model under test: its optimizer and a ``step(batch, precision)`` doing forward,
    backward, AdamW step and zero_grad. ``loss(batch)`` is the model's scalar training loss."""

    def __init__(self, name: str, model: torch.nn.Module, optim: OptimConfig, loss):
        self.name, self.model, self.loss = name, model.train(), loss
        self.optimizer = build_optimizer(model, optim)
        self.params = sum(p.numel() for p in model.parameters())

    def forward_backward(self, batch: dict[str, torch.Tensor], precision: str) -> float:
        ctx = torch.autocast("cpu", dtype=DTYPES[precision]) if precision != "fp32" else nullcontext()
        with ctx:
            loss = self.loss(batch)
        loss.backward()
        return loss.item()

    def step(self, batch: dict[str, torch.Tensor], precision: str) -> None:
        self.forward_backward(batch, precision)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def flops(self, batch: dict[str, torch.Tensor], precision: str) -> int:
        """FLOPs of one forward + backward; gradients are cleared, weights untouched."""
        with count_flops() as counter:
            self.forward_backward(batch, precision)
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    def tokens_per_s(self, batches: list[dict[str, torch.Tensor]], steps: int, precision: str) -> float:
        """Tokens (B · S, padding included) per second over ``steps`` steps cycling ``batches``."""
        start = time.perf_counter()
        for i in range(steps):
            self.step(batches[i % len(batches)], precision)
        elapsed = time.perf_counter() - start
        return steps * batches[0]["input_ids"].numel() / elapsed


def build_sides(args: argparse.Namespace) -> tuple[Side, Side, DictConfig]:
    """uer's model for ``args.preset`` and the matching ``BertForPreTraining``, same seed, same optimizer."""
    cfg = compose_config([f"+model={args.preset}", f"model.vocab_size={args.vocab_size}"])
    model_cfg = resolve(cfg.model)
    optim = validated(cfg.optim, OptimConfig, "optim")
    torch.manual_seed(args.seed)
    uer_model = build_model(cfg.model)
    uer = Side("uer", uer_model, optim, lambda b: uer_model(b).loss)
    torch.manual_seed(args.seed)
    hf_model = BertForPreTraining(hf_config(model_cfg))
    hf = Side("transformers", hf_model, optim, lambda b: hf_model(
        input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b.get("attention_mask"),
        labels=b["labels"], next_sentence_label=b["next_sentence_label"]).loss)
    return uer, hf, model_cfg


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    uer, hf, m = build_sides(args)
    batches = make_batches(min(args.steps, 8), args.batch, args.seq, args.vocab_size, args.seed)
    masked = int((batches[0]["labels"] != -100).sum())
    tokens = args.batch * args.seq
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
          f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"model {args.preset}: dim {m.dim}, {m.num_layers} layers, {m.num_heads} heads, FFN {m.ffn_dim}, "
          f"vocab {m.vocab_size}, {m.max_seq_length} positions, dropout {m.dropout} (train mode), "
          f"{m.encoder.activation}, LayerNorm eps {m.norm_eps}; params uer {uer.params:,}, "
          f"transformers {hf.params:,} (SDPA)")
    print(f"batch {args.batch} x seq {args.seq} = {tokens} tokens/step, {masked} masked positions/step "
          f"(uer MlmCollator, 15%); {len(batches)} distinct batches cycled; no padding, so attention_mask "
          f"is omitted for uer and attention_mask=None is passed to transformers")
    d = uer.optimizer.defaults
    impl = "fused" if d.get("fused") else "foreach" if d.get("foreach") else "torch default: per-tensor loop on CPU"
    print(f"step = forward, backward, AdamW (uer's optim config: lr {d['lr']}, {impl}, same for both), "
          f"zero_grad; no clipping, no scheduler; warmup {args.warmup} steps per side and precision, then "
          f"{args.rounds} interleaved rounds x {args.steps} timed steps per side (order flips each round), "
          f"median round reported")
    print("MLM head: uer computes it at masked positions only, transformers at every position "
          "(kept: a real difference of the two implementations)")
    with torch.no_grad():
        first = [s.loss(batches[0]).item() for s in (uer, hf)]
    print(f"loss before training: uer {first[0]:.3f}, transformers {first[1]:.3f} "
          f"(ln V + ln 2 = {np.log(m.vocab_size) + np.log(2):.3f})")
    print("FLOPs: torch FlopCounterMode, forward + backward matmuls as executed; MFU = FLOP/s / measured "
          "peak of a 2048^3 matmul in the same precision\n")
    for precision in args.precision:
        peak = peak_flops(torch.device("cpu"), DTYPES[precision])
        sides = (uer, hf)
        flops = [s.flops(batches[0], precision) for s in sides]
        for s in sides:
            for i in range(args.warmup):
                s.step(batches[i % len(batches)], precision)
        rates: dict[str, list[float]] = {s.name: [] for s in sides}
        for r in range(args.rounds):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                rates[s.name].append(s.tokens_per_s(batches, args.steps, precision))
        print(f"[{precision}] peak {peak / 1e9:.1f} GFLOP/s")
        median = {}
        for s, f in zip(sides, flops):
            median[s.name] = statistics.median(rates[s.name])
            mfu = f * median[s.name] / tokens / peak
            rounds = ", ".join(f"{x:.0f}" for x in rates[s.name])
            print(f"  {s.name:<13} {median[s.name]:9.0f} tokens/s (rounds: {rounds}), "
                  f"{1000 * tokens / median[s.name]:7.1f} ms/step, {f / 1e9:7.2f} GFLOP/step, "
                  f"MFU {100 * mfu:5.1f}%")
        print(f"  ratio uer / transformers: {median['uer'] / median['transformers']:.2f}x\n")


if __name__ == "__main__":
    main()
