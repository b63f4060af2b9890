"""LLaMA training throughput (tokens/s) and MFU, and greedy generation tokens/s, of uer against
``transformers.LlamaForCausalLM`` on the same weights and the same batches.

For each ``--preset`` (``llama_tiny``, ``llama_mini`` ...) the uer model is built from the preset and
the peer is the ``LlamaForCausalLM`` that ``uer-convert`` would export it as: its config from
:func:`uer.convert.configs.hf_config_for`, its weights the uer model's own mapped by the converter's
spec (:mod:`uer.convert.llama`; ``load_state_dict(strict=True)``), so both start from the same
function (the script prints both parameter counts and both losses before training).

Training: the very same batches (random ids, ``labels = input_ids``, full length, no padding, so
no attention mask on either side) and the same optimizer (``uer.train.optim.build_optimizer`` with
uer's optim config); a step is forward, backward, optimizer step, zero_grad; fp32 and bf16 (forward
under ``torch.autocast``, as uer's trainer does). ``--compile`` adds a compiled side per library:
``model.compile()`` of a second copy of each model (what ``trainer.compile=true`` does for uer; the
peer compiled the same way). FLOPs per step: ``uer.train.flops.count_flops``; MFU against
``uer.train.flops.peak_flops`` (the best of several matmul sizes in the same precision, measured in this run) or ``--peak-tflops``.

Generation: ``uer.generation.generate`` (greedy, KV cache) against ``LlamaForCausalLM.generate``
(``do_sample=False``, ``use_cache=True``), the same prompts (``--gen-batch`` rows of ``--prompt``
random ids), exactly ``--new-tokens`` new tokens on both sides (no EOS), eval mode, fp32; the script
checks that both produce the same tokens. Rate: new tokens per second (rows × new tokens / time).

Every comparison alternates the sides in interleaved rounds (the order flips every round) and
reports the median round (``benchmarks/common.py``).

Run: ``python benchmarks/llama_throughput.py --preset llama_tiny llama_mini`` (benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from types import SimpleNamespace

import torch
from common import DTYPES, Side, add_timing_args, converted_peer, interleaved, ratio, summary, timed_sides, start

from uer.config import compose_config, resolve
from uer.errors import UerError
from uer.generation import generate
from uer.models import build_model
from uer.train.config import OptimConfig, validated
from uer.train.flops import peak_flops

TOKENS = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
"""Special ids of the exported config (those of uer's shipped SentencePiece layout)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", default=["llama_tiny", "llama_mini"], help="llama_tiny, llama_mini")
    p.add_argument("--batch", type=int, default=8, help="rows per training step")
    p.add_argument("--seq", type=int, default=256, help="training sequence length")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side per precision")
    p.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--vocab-size", type=int, default=8000, help="8000 = the tokenizers shipped with uer")
    p.add_argument("--compile", action="store_true", help="add a torch.compile'd copy of each model")
    p.add_argument("--gen-batch", type=int, default=4, help="prompts per generate call (0: skip generation)")
    p.add_argument("--prompt", type=int, default=32, help="prompt length in tokens")
    p.add_argument("--new-tokens", type=int, default=64, help="new tokens per row")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--peak-tflops", type=float, help="MFU against this peak instead of the measured matmul")
    p.add_argument("--seed", type=int, default=0)
    add_timing_args(p, steps=4, rounds=3)
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.threads, args.batch, args.prompt, args.new_tokens) < 1 \
            or min(args.warmup, args.gen_batch) < 0 or not 2 <= args.seq:
        p.error("steps, rounds, threads, batch, prompt and new tokens must be >= 1, warmup and gen batch >= 0, "
                "seq >= 2")
    return args


def models(preset: str, vocab_size: int, seed: int):
    """(uer model, resolved model config, ``LlamaForCausalLM`` with the uer model's weights, optim config).

    Raises:
        SystemExit: an unknown preset, or one that ``uer-convert`` cannot export as a transformers model.
    """
    try:
        cfg = compose_config([f"+model={preset}", f"model.vocab_size={vocab_size}"])
        m = resolve(cfg.model)
        torch.manual_seed(seed)
        uer_model = build_model(cfg.model)
        peer = converted_peer(m, uer_model, TOKENS)
    except UerError as e:
        raise SystemExit(f"error: {e}") from None
    return uer_model, m, peer, validated(cfg.optim, OptimConfig, "optim")


def lm_batches(vocab_size: int, n: int, batch: int, seq: int, seed: int, device) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of ``input_ids`` (B, S) uniform over the vocabulary and ``labels`` equal to them
    (both sides shift by one inside the loss), as uer's ``LmCollator`` makes for packed blocks."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab_size, (batch, seq), generator=g).to(device)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def tokens(batch: dict[str, torch.Tensor]) -> int:
    """What a training rate counts: tokens (B·S)."""
    return batch["input_ids"].numel()


def training(args, uer_model, peer, m, optim, device) -> None:
    """Time training in every precision and print rates, ratios and MFU."""
    sides = [Side("uer", uer_model.to(device), optim, lambda b: uer_model(b).loss, tokens),
             Side("transformers", peer.to(device), optim, lambda b: peer(**b).loss, tokens)]
    if args.compile:
        for s in list(sides):
            twin = copy.deepcopy(s.model)  # same weights; compiled after the FLOPs are counted
            call = (lambda b, t=twin: t(b).loss) if s.name == "uer" else (lambda b, t=twin: t(**b).loss)
            sides.append(Side(f"{s.name} compiled", twin, optim, call, tokens))
    data = lm_batches(m.vocab_size, min(args.steps, 4), args.batch, args.seq, args.seed, device)
    print(f"params uer {sides[0].params:,}, transformers {sides[1].params:,} ({type(peer).__name__}, SDPA); "
          f"batch {args.batch} x seq {args.seq} = {tokens(data[0])} tokens/step, {len(data)} batches cycled, "
          "the same tensors for every side, no padding (no attention mask)")
    with torch.no_grad():
        first = [s.loss(data[0]).item() for s in sides[:2]]
    print(f"loss before training: uer {first[0]:.4f}, transformers {first[1]:.4f} (same weights; uniform guess "
          f"{torch.log(torch.tensor(float(m.vocab_size))):.4f})")
    # counted before compiling: a module first called under FlopCounterMode's dispatch mode is never compiled
    flops = {p: {s.name: s.flops(data[0], p) for s in sides} for p in args.precision}
    for s in sides:
        if s.name.endswith("compiled"):
            s.model.compile()
    for precision in args.precision:
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device, DTYPES[precision])
        rates = timed_sides(sides, data, precision, args.warmup, args.steps, args.rounds)
        source = "given by --peak-tflops" if args.peak_tflops else "measured: best of several matmul sizes"
        print(f"[train {precision}] peak {peak / 1e9:.1f} GFLOP/s ({source})")
        median = {s.name: statistics.median(rates[s.name]) for s in sides}
        for s in sides:
            mfu = flops[precision][s.name] * median[s.name] / tokens(data[0]) / peak
            print(f"  {s.name:<22} {summary(rates[s.name])} tokens/s, {1000 * tokens(data[0]) / median[s.name]:8.1f} "
                  f"ms/step, {flops[precision][s.name] / 1e9:7.2f} GFLOP/step, MFU {100 * mfu:5.1f}%")
        for mode in ("", " compiled") if args.compile else ("",):
            print(f"  ratio uer{mode} / transformers{mode}: {ratio(rates['uer' + mode], rates['transformers' + mode])}")
        if args.compile:
            print(f"  ratio uer compiled / transformers: {ratio(rates['uer compiled'], rates['transformers'])}")
        print()


def generation(args, uer_model, peer, m, device) -> None:
    """Time greedy generation with the KV cache on both sides and print rates and their ratio."""
    uer_model.eval(), peer.eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    prompt = torch.randint(3, m.vocab_size, (args.gen_batch, args.prompt), generator=g).to(device)
    mask = torch.ones_like(prompt)

    def ours() -> torch.Tensor:
        return generate(uer_model, {"input_ids": prompt, "attention_mask": mask}, max_new_tokens=args.new_tokens,
                        strategy="greedy", eos_token_id=None, pad_token_id=TOKENS.pad_token_id)

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            out = peer.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=args.new_tokens,
                                min_new_tokens=args.new_tokens, do_sample=False, num_beams=1, use_cache=True,
                                eos_token_id=None, pad_token_id=TOKENS.pad_token_id)
        return out[:, prompt.shape[1]:]

    same = torch.equal(ours()[:, -args.new_tokens:], theirs())

    def rate(fn) -> float:
        start = time.perf_counter()
        fn()
        return args.gen_batch * args.new_tokens / (time.perf_counter() - start)

    rates = interleaved({"uer": lambda: rate(ours), "transformers": lambda: rate(theirs)}, args.rounds)
    print(f"[generate fp32] greedy, KV cache, {args.gen_batch} prompts x {args.prompt} tokens, {args.new_tokens} new "
          f"tokens each (no EOS); same tokens on both sides: {same}")
    for name, r in rates.items():
        print(f"  {name:<22} {summary(r)} new tokens/s")
    print(f"  ratio uer / transformers: {ratio(rates['uer'], rates['transformers'])}\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    device = start(args)
    print(f"train step = forward, backward, uer.train.optim.build_optimizer (uer's optim config, every side), "
          f"zero_grad; warmup {args.warmup}, then {args.rounds} interleaved rounds x {args.steps} timed steps per "
          "side, median round\n")
    for preset in args.preset:
        uer_model, m, peer, optim = models(preset, args.vocab_size, args.seed)
        if args.seq > m.max_seq_length or args.prompt + args.new_tokens > m.max_seq_length:
            raise SystemExit(f"--seq and --prompt + --new-tokens must be <= {m.max_seq_length} for {preset}")
        print(f"model {preset}: dim {m.dim}, {m.num_layers} layers, {m.num_heads} heads "
              f"({m.encoder.attention.num_kv_heads or m.num_heads} kv heads), FFN {m.ffn_dim} (SwiGLU), "
              f"vocab {m.vocab_size}, RMSNorm eps {m.norm_eps}, rope base {m.encoder.attention.rotary.base}")
        if args.gen_batch:
            generation(args, uer_model.to(device), peer.to(device), m, device)
        training(args, uer_model, peer, m, optim, device)


if __name__ == "__main__":
    main()
