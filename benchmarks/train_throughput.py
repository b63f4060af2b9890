"""Training throughput and MFU of a uer preset against its ``transformers`` peer.

``--preset`` picks the model and with it the family (``benchmarks/peers.py``): a BERT preset
(MLM + NSP) against ``BertForPreTraining``, a GPT-2 preset against ``GPT2LMHeadModel``, a ViT preset
against ``ViTForImageClassification``. Both models get the same config, the same batches and the same
optimizer (``uer.train.optim.build_optimizer`` with uer's optim config, on both), in the same
process. A step is forward, backward, optimizer step and zero_grad; bf16 wraps the forward in
``torch.autocast(..., dtype=torch.bfloat16)`` as uer's trainer does. The sides alternate in
interleaved rounds (the order flips every round) and the median round is reported.

FLOPs per step are counted with ``uer.train.flops.count_flops`` (forward + backward, every matmul,
convolution and attention product actually executed) for each model; MFU is achieved FLOP/s over
``uer.train.flops.peak_flops`` (the best of several matmul sizes in the same precision) measured in the same run.

Run: ``python benchmarks/train_throughput.py --preset bert_mini`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch
from common import DTYPES, Side, add_timing_args, environment, summary, timed_sides
from omegaconf import DictConfig
from peers import Family, family_of

from uer.config import compose_config, resolve
from uer.errors import UerError
from uer.models import build_model
from uer.train.config import OptimConfig, validated
from uer.train.flops import peak_flops


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="bert_mini",
                   help="bert_tiny, bert_mini, bert_base, gpt2_tiny, gpt2, vit_tiny, vit_base_16")
    p.add_argument("--batch", type=int, help="rows per step (default: bert 32, gpt2 8, vit 32)")
    p.add_argument("--seq", type=int, help="sequence length (default: bert 128, gpt2 512; not for vit)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side per precision")
    p.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--vocab-size", type=int, default=8000,
                   help="text presets; 8000 = the tokenizers shipped with uer (the default of uer-pretrain)")
    p.add_argument("--num-labels", type=int, default=10, help="ViT presets: number of classes")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--peak-tflops", type=float,
                   help="MFU against this peak (e.g. a GPU's dense bf16 spec) instead of the measured matmul")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true",
                   help="add a side: a second uer model (same init) under torch.compile, as trainer.compile=true runs")
    p.add_argument("--compile-peer", action="store_true", help="torch.compile the transformers model too")
    add_timing_args(p, steps=10, rounds=3)
    args = p.parse_args()
    if min(args.steps, args.rounds, args.threads, args.vocab_size, args.num_labels) < 1 or args.warmup < 0:
        p.error("steps, rounds, threads, vocab size and labels must be >= 1, warmup >= 0")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        p.error("--peak-tflops must be > 0")
    return args


def model_config(args: argparse.Namespace) -> tuple[DictConfig, DictConfig]:
    """The composed config of ``args.preset`` with the vocabulary or label count set, and its
    resolved model section.

    Raises:
        SystemExit: unknown preset (the message lists the presets).
    """
    try:
        cfg = compose_config([f"+model={args.preset}"])
    except UerError as e:
        raise SystemExit(f"error: {e}") from None
    if "vocab_size" in cfg.model:
        cfg.model.vocab_size = args.vocab_size
    if "num_labels" in cfg.model:
        cfg.model.num_labels = args.num_labels
    return cfg, resolve(cfg.model)


def shape(args: argparse.Namespace, family: Family, m: DictConfig) -> tuple[int, int | None]:
    """(batch, sequence length) from the arguments or the family's defaults.

    Raises:
        SystemExit: a length for images, or one outside [5, positions of the model].
    """
    batch = family.batch if args.batch is None else args.batch
    seq = family.seq if args.seq is None else args.seq
    if batch < 1:
        raise SystemExit("--batch must be >= 1")
    if family.seq is None:
        if args.seq is not None:
            raise SystemExit(f"--seq does not apply to {args.preset}: its length is (image/patch)^2 + 1")
    elif not 5 <= seq <= m.max_seq_length:
        raise SystemExit(f"--seq must be in [5, {m.max_seq_length}] for {args.preset}")
    return batch, seq


def describe(args, family: Family, m: DictConfig, sides: list[Side], batches, batch: int, seq) -> None:
    """Print the exact setup: environment, model, batches, step, and both initial losses."""
    uer, hf = sides[0], sides[-1]
    sizes = (f"image {m.image_size}, patch {m.patch_size}, {m.num_labels} labels" if family.unit == "images"
             else f"vocab {m.vocab_size}, {m.max_seq_length} positions")
    print(environment(args.threads) + f", device {args.device}")
    print(f"model {args.preset} ({family.name}): dim {m.dim}, {m.num_layers} layers, {m.num_heads} heads, "
          f"FFN {m.ffn_dim}, {sizes}, {m.encoder.ffn.activation}, norm eps {m.norm_eps}, {m.encoder.norm_position}-LN, "
          f"dropout {m.encoder.dropout} (train mode); params uer {uer.params:,}, transformers {hf.params:,} "
          f"({type(hf.model).__name__}, SDPA)")
    shape_text = (f"batch {batch} images of {m.channels}x{m.image_size}x{m.image_size} "
                  f"({(m.image_size // m.patch_size) ** 2 + 1} positions each)" if seq is None else
                  f"batch {batch} x seq {seq} = {family.items(batches[0])} tokens/step")
    print(f"{shape_text}; {len(batches)} distinct batches "
          f"cycled, the same tensors for both sides: {', '.join(batches[0])}; no padding, so no "
          f"attention_mask on either side")
    d = uer.optimizer.defaults
    impl = "fused" if d.get("fused") else "foreach" if d.get("foreach") else "per-tensor loop"
    print(f"step = forward, backward, {type(uer.optimizer).__name__} (uer.train.optim.build_optimizer with "
          f"uer's optim config on BOTH sides: lr {d['lr']}, {impl}, no decay on vectors), zero_grad; no "
          f"clipping, no scheduler; warmup {args.warmup} steps per side and precision, then {args.rounds} "
          f"interleaved rounds x {args.steps} timed steps per side (order flips each round), median round")
    print(f"execution: uer eager{' and a second uer model under torch.compile' if args.compile else ''}, "
          f"transformers {'torch.compile' if args.compile_peer else 'eager'}")
    print(family.note)
    with torch.no_grad():
        first = [s.loss(batches[0]).item() for s in (uer, hf)]
    print(f"loss before training: uer {first[0]:.3f}, transformers {first[1]:.3f} "
          f"(uniform guess: {family.chance(m):.3f})")
    print("FLOPs: torch FlopCounterMode, forward + backward as executed; MFU = FLOP/s / peak (the best of several matmul sizes "
          "in the same precision measured in this run, unless --peak-tflops)\n")


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg, m = model_config(args)
    family = family_of(m)
    batch, seq = shape(args, family, m)
    optim = validated(cfg.optim, OptimConfig, "optim")
    torch.manual_seed(args.seed)
    uer_model = build_model(cfg.model).to(device)
    torch.manual_seed(args.seed)
    hf_model, hf_loss = family.peer(m)
    sides = [Side("uer", uer_model, optim, lambda b: uer_model(b).loss, family.items)]
    if args.compile:  # a second uer model, same init, run through torch.compile
        torch.manual_seed(args.seed)
        compiled = build_model(cfg.model).to(device)
        sides.append(Side("uer compiled", compiled, optim, lambda b: compiled(b).loss, family.items))
    sides.append(Side("transformers", hf_model.to(device), optim, hf_loss, family.items))
    batches = [{k: v.to(device) for k, v in b.items()}
               for b in family.batches(m, min(args.steps, 8), batch, seq, args.seed)]
    describe(args, family, m, sides, batches, batch, seq)
    items = family.items(batches[0])
    # counted before compiling: a module first called under FlopCounterMode's dispatch mode is never compiled
    flops = {p: {s.name: s.flops(batches[0], p) for s in sides} for p in args.precision}
    for s in sides:
        if s.name == "uer compiled" or (s.name == "transformers" and args.compile_peer):
            s.model.compile()
    for precision in args.precision:
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device, DTYPES[precision])
        rates = timed_sides(sides, batches, precision, args.warmup, args.steps, args.rounds)
        source = "given by --peak-tflops" if args.peak_tflops else "measured: best of several matmul sizes"
        print(f"[{precision}] peak {peak / 1e9:.1f} GFLOP/s ({source})")
        median = {}
        for s in sides:
            median[s.name] = statistics.median(rates[s.name])
            mfu = flops[precision][s.name] * median[s.name] / items / peak
            print(f"  {s.name:<14} {summary(rates[s.name])} {family.unit}/s, "
                  f"{1000 * items / median[s.name]:7.1f} ms/step, {flops[precision][s.name] / 1e9:7.2f} GFLOP/step, "
                  f"MFU {100 * mfu:5.1f}%")
        for s in sides[:-1]:
            print(f"  ratio {s.name} / transformers: {median[s.name] / median['transformers']:.2f}x")
        print()


if __name__ == "__main__":
    main()
