"""CLIP training throughput (image-caption pairs/s) and MFU of uer against ``transformers.CLIPModel``.

For each ``--preset`` (``clip_tiny``, ``clip_b32`` ...) the uer model is built from the preset and
the peer is a ``CLIPModel`` with the same sizes whose weights are the uer model's own, mapped by the
converter's spec (:mod:`uer.convert.clip`; ``load_state_dict(strict=True)``), so both start from
the same function: the script prints both initial losses. Both get the same batches and the same
optimizer (``uer.train.optim.build_optimizer`` with uer's optim config), in one process; fp32 and
bf16 (forward under ``torch.autocast``, as uer's trainer does). A step is forward (contrastive loss
over the batch), backward, optimizer step, zero_grad. The sides alternate in interleaved rounds
(the order flips every round) and the median round is reported (``benchmarks/common.py``).

Batches: full-length captions, no padding and so no attention mask on either side: random word ids
with the end token (id 3, never drawn otherwise) last, which is where uer's ``last`` pooling and
transformers' first-eos pooling (``eos_token_id=3``) both read; standard-normal ``pixel_values``.
FLOPs per step: ``uer.train.flops.count_flops`` (forward + backward as executed) for each model;
MFU = FLOP/s over ``uer.train.flops.peak_flops`` (the best of several matmul sizes in the same precision, measured in this run)
or ``--peak-tflops``.

Run: ``python benchmarks/clip_throughput.py --preset clip_tiny clip_b32`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import statistics

import torch
from common import DTYPES, Side, add_timing_args, summary, timed_sides, start
from transformers import CLIPConfig, CLIPModel

from uer.config import compose_config, resolve
from uer.convert import engine
from uer.convert.families import FAMILIES
from uer.errors import UerError
from uer.models import build_model
from uer.train.config import OptimConfig, validated
from uer.train.flops import peak_flops

END_ID = 3
"""The caption end token ([SEP] of uer's shipped WordPiece tokenizers)."""
DEFAULT_BATCH = {"clip_tiny": 64, "clip_b32": 32, "clip_b16": 16}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", default=["clip_tiny", "clip_b32"], help="clip_tiny, clip_b32, clip_b16")
    p.add_argument("--batch", type=int, help="pairs per step (default: clip_tiny 64, clip_b32 32, clip_b16 16)")
    p.add_argument("--seq", type=int, help="caption length in tokens (default: the preset's max_seq_length)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side per precision")
    p.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--vocab-size", type=int, default=8000, help="8000 = the tokenizers shipped with uer")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--peak-tflops", type=float, help="MFU against this peak instead of the measured matmul")
    p.add_argument("--seed", type=int, default=0)
    add_timing_args(p, steps=5, rounds=3)
    args = p.parse_args()
    if min(args.steps, args.rounds, args.threads) < 1 or args.warmup < 0 or args.vocab_size <= END_ID + 1:
        p.error("steps, rounds and threads must be >= 1, warmup >= 0, vocab size > 4")
    return args


def models(preset: str, args, device):
    """(uer model, resolved model config, CLIPModel with the uer model's weights, optim config)."""
    try:
        cfg = compose_config([f"+model={preset}", f"model.vocab_size={args.vocab_size}"])
    except UerError as e:
        raise SystemExit(f"error: {e}") from None
    m = resolve(cfg.model)
    if m.target.clr.text_pooling != "last" or m.get("dropout"):
        raise SystemExit(f"preset {preset}: the benchmark expects text_pooling=last and no dropout")
    torch.manual_seed(args.seed)
    uer_model = build_model(cfg.model)
    tower = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    peer = CLIPModel(CLIPConfig(
        text_config={**dict(zip(tower, (m.text.dim, m.text.num_layers, m.text.num_heads, m.text.ffn_dim))),
                     "vocab_size": m.vocab_size, "max_position_embeddings": m.max_seq_length,
                     "hidden_act": m.activation, "layer_norm_eps": m.norm_eps, "eos_token_id": END_ID,
                     "bos_token_id": END_ID - 1, "pad_token_id": 0},
        vision_config={**dict(zip(tower, (m.vision.dim, m.vision.num_layers, m.vision.num_heads, m.vision.ffn_dim))),
                       "image_size": m.vision.image_size, "patch_size": m.vision.patch_size,
                       "num_channels": m.vision.channels, "hidden_act": m.activation, "layer_norm_eps": m.norm_eps},
        projection_dim=m.projection_dim, attn_implementation="sdpa"))
    family = FAMILIES["clip"]
    tensors, _ = engine.to_hf(family, family.head("CLIPModel"), uer_model, engine.num_layers(m))
    peer.load_state_dict(tensors, strict=True)
    return uer_model.to(device), m, peer.to(device), validated(cfg.optim, OptimConfig, "optim")


def batches(m, n: int, batch: int, seq: int, seed: int, device) -> list[dict[str, torch.Tensor]]:
    """``n`` batches: ``input_ids`` (B, S) random words in [END_ID + 1, vocab) ending in END_ID, and
    ``pixel_values`` (B, C, H, W) standard normal (already-normalized images)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(END_ID + 1, m.vocab_size, (batch, seq), generator=g)
        ids[:, -1] = END_ID
        pixels = torch.randn(batch, m.vision.channels, m.vision.image_size, m.vision.image_size, generator=g)
        out.append({"input_ids": ids.to(device), "pixel_values": pixels.to(device)})
    return out


def pairs(batch: dict[str, torch.Tensor]) -> int:
    """What a rate counts: image-caption pairs (B)."""
    return batch["pixel_values"].shape[0]


def run(preset: str, args, device) -> None:
    """Benchmark one preset in every precision and print the report."""
    uer_model, m, peer, optim = models(preset, args, device)
    batch, seq = args.batch or DEFAULT_BATCH.get(preset, 32), args.seq or m.max_seq_length
    if batch < 2 or not 2 <= seq <= m.max_seq_length:
        raise SystemExit(f"--batch must be >= 2 and --seq in [2, {m.max_seq_length}] for {preset}")
    sides = [Side("uer", uer_model, optim, lambda b: uer_model(b).loss, pairs),
             Side("transformers", peer, optim, lambda b: peer(**b, return_loss=True).loss, pairs)]
    data = batches(m, min(args.steps, 4), batch, seq, args.seed, device)
    print(f"model {preset}: text {m.text.num_layers}x{m.text.dim} ({m.text.num_heads} heads, FFN {m.text.ffn_dim}, "
          f"vocab {m.vocab_size}), vision {m.vision.num_layers}x{m.vision.dim} ({m.vision.num_heads} heads, FFN "
          f"{m.vision.ffn_dim}, {m.vision.image_size}px / {m.vision.patch_size}), projection {m.projection_dim}, "
          f"{m.activation}; params uer {sides[0].params:,}, transformers {sides[1].params:,} (CLIPModel, SDPA)")
    print(f"batch {batch} pairs: captions of {seq} tokens (unpadded), images {m.vision.channels}x{m.vision.image_size}"
          f"x{m.vision.image_size}; {len(data)} batches cycled, the same tensors for both sides")
    with torch.no_grad():
        first = [s.loss(data[0]).item() for s in sides]
    print(f"loss before training: uer {first[0]:.4f}, transformers {first[1]:.4f} (same weights)")
    flops = {p: {s.name: s.flops(data[0], p) for s in sides} for p in args.precision}
    for precision in args.precision:
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device, DTYPES[precision])
        rates = timed_sides(sides, data, precision, args.warmup, args.steps, args.rounds)
        print(f"[{precision}] peak {peak / 1e9:.1f} GFLOP/s "
              f"({'given by --peak-tflops' if args.peak_tflops else 'measured: best of several matmul sizes'})")
        median = {s.name: statistics.median(rates[s.name]) for s in sides}
        for s in sides:
            mfu = flops[precision][s.name] * median[s.name] / batch / peak
            print(f"  {s.name:<13} {summary(rates[s.name])} pairs/s, {1000 * batch / median[s.name]:8.1f} ms/step, "
                  f"{flops[precision][s.name] / 1e9:8.2f} GFLOP/step, MFU {100 * mfu:5.1f}%")
        print(f"  ratio uer / transformers: {median['uer'] / median['transformers']:.2f}x\n")


def main() -> None:
    args = parse_args()
    device = start(args)
    print("step = forward (symmetric InfoNCE over the batch), backward, the optimizer uer.train.optim.build_optimizer "
          f"makes from uer's optim config (both sides), zero_grad; warmup {args.warmup}, then {args.rounds} "
          f"interleaved rounds x {args.steps} timed steps per side, median round\n")
    for preset in args.preset:
        run(preset, args, device)


if __name__ == "__main__":
    main()
