"""Training throughput (tokens/s) of uer's recurrent and gated-convolutional language models against
the same model written plainly in torch: ``nn.Embedding`` → ``nn.LSTM``/``nn.GRU`` or a loop of
``nn.Conv1d`` + GLU with residuals → ``nn.Linear`` → ``F.cross_entropy``.

For each ``--preset`` (``lstm``, ``gru``, ``gatedcnn_9``, ``gatedcnn_13``) the uer model is built from
the preset and the plain model gets the uer model's own tensors (copied by name), so both compute the
same function: the script prints both losses before training (eval mode, no dropout). Both get the
same batches and the same optimizer (``uer.train.optim.build_optimizer`` with uer's optim config), in
one process; a step is forward, backward, optimizer step, zero_grad, with the presets' dropout
active on both sides. The sides alternate in interleaved rounds (the order flips every round) and
the median round is reported (``benchmarks/common.py``).

Batches: random word ids, ``labels`` = the ids (causal LM, shifted inside the loss). With
``--padded`` every other row is cut to a random length and right-padded (label -100, attention mask
0): uer zeroes the padded outputs and the convolutions' padded inputs (with ``--pack`` its recurrent
encoder packs the rows, ``pack_padded_sequence``), the plain side runs every row at full length
(its real positions' outputs are the same: right padding is after them), so the figure shows what
respecting the mask costs.

Run: ``python benchmarks/rnn_cnn_throughput.py --preset lstm gatedcnn_9`` (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from common import Side, add_timing_args, summary, timed_sides, start
from torch import nn

from uer.config import compose_config, resolve
from uer.errors import UerError
from uer.models import build_model
from uer.train.config import OptimConfig, validated

PRESETS = ("lstm", "gru", "gatedcnn_9", "gatedcnn_13")


class PlainRnnLm(nn.Module):
    """Embedding, dropout, ``nn.LSTM``/``nn.GRU`` (dropout between layers), dropout, a linear head
    tied to the embedding: ``forward(batch) -> mean cross-entropy of token t + 1 at position t``."""

    def __init__(self, cell: type[nn.Module], vocab_size: int, dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.rnn = cell(dim, dim, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden, _ = self.rnn(self.drop(self.embedding(batch["input_ids"])))
        return next_token_loss(self.head(self.drop(hidden)), batch["labels"])


class PlainGatedCnnLm(nn.Module):
    """Embedding, then ``nn.Conv1d`` layers zero-padded by k - 1 on both sides with the last k - 1
    outputs dropped (the textbook causal convolution), each followed by ``F.glu``, dropout before
    each, a residual around layers 1-2, 3-4 ... (and a last, shorter block), a linear head."""

    def __init__(self, vocab_size: int, emb_dim: int, dim: int, num_layers: int, kernel_size: int,
                 block_size: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim if i == 0 else dim, 2 * dim, kernel_size, padding=kernel_size - 1)
                                   for i in range(num_layers))
        self.block_size, self.trim = block_size, kernel_size - 1
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.embedding(batch["input_ids"]).transpose(1, 2)
        block_input = None
        for i, conv in enumerate(self.convs):
            h = F.glu(conv(self.drop(h))[..., :-self.trim], dim=1)
            last_of_block = i > 0 and (i % self.block_size == 0 or i == len(self.convs) - 1)
            if last_of_block:
                h = h + block_input
            if i == 0 or last_of_block:
                block_input = h
        return next_token_loss(self.head(h.transpose(1, 2)), batch["labels"])


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, S, V) at t against ``labels`` (B, S) at t + 1, -100 ignored."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", choices=PRESETS, default=["lstm", "gatedcnn_9"])
    p.add_argument("--batch", type=int, default=8, help="rows per step")
    p.add_argument("--seq", type=int, default=128, help="tokens per row")
    p.add_argument("--padded", action="store_true", help="every other row right-padded to a random length")
    p.add_argument("--pack", action="store_true", help="uer's recurrent encoder packs padded rows (model.encoder.pack)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side")
    p.add_argument("--vocab-size", type=int, default=8000, help="8000 = the tokenizers shipped with uer")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0)
    add_timing_args(p, steps=3, rounds=3)
    args = p.parse_args()
    if min(args.steps, args.rounds, args.threads, args.batch) < 1 or args.seq < 2 or args.warmup < 0:
        p.error("steps, rounds, threads and batch must be >= 1, seq >= 2, warmup >= 0")
    return args


def models(preset: str, args, device) -> tuple[nn.Module, nn.Module, OptimConfig, str]:
    """(uer model, the plain model holding its tensors, optim config, a line describing the sizes)."""
    try:
        cfg = compose_config([f"+model={preset}", f"model.vocab_size={args.vocab_size}",
                              *(["model.encoder.pack=true"] if args.pack and preset in ("lstm", "gru") else [])])
    except UerError as e:
        raise SystemExit(f"error: {e}") from None
    m, enc = resolve(cfg.model), resolve(cfg.model).encoder
    torch.manual_seed(args.seed)
    uer_model = build_model(cfg.model)
    if enc._target_.endswith("RnnEncoder"):
        plain = PlainRnnLm({"lstm": nn.LSTM, "gru": nn.GRU}[enc.cell], m.vocab_size, m.dim, m.num_layers, m.dropout)
        names = {"embedding.weight": "embedding.word.weight", **{f"rnn.{k}": f"encoder.rnn.{k}" for k in plain.rnn.state_dict()}}
        line = f"{enc.cell.upper()} {m.num_layers} x {m.dim}, tied head"
    else:
        plain = PlainGatedCnnLm(m.vocab_size, m.emb_dim, m.dim, m.num_layers, enc.kernel_size, enc.block_size, m.dropout)
        names = {"embedding.weight": "embedding.word.weight", "head.weight": "target.lm.decoder.weight",
                 "head.bias": "target.lm.decoder.bias",
                 **{f"convs.{i}.{p}": f"encoder.layers.{i}.conv.{p}" for i in range(m.num_layers) for p in ("weight", "bias")}}
        line = (f"gated CNN {m.num_layers} x {m.dim} channels, kernel {enc.kernel_size}, residual blocks of "
                f"{enc.block_size}, embedding {m.emb_dim}")
    theirs = uer_model.state_dict()
    missing, unexpected = plain.load_state_dict({k: theirs[v] for k, v in names.items()}, strict=False)
    if unexpected or set(missing) - {"head.weight"}:  # a tied head is the embedding
        raise SystemExit(f"the plain {preset} does not take uer's tensors: missing {missing}, unexpected {unexpected}")
    return uer_model.to(device), plain.to(device), validated(cfg.optim, OptimConfig, "optim"), line


def batches(n: int, args, device) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of random ids (``labels`` = ids); with ``--padded`` odd rows are right-padded."""
    g = torch.Generator().manual_seed(args.seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, args.vocab_size, (args.batch, args.seq), generator=g)
        batch = {"input_ids": ids, "labels": ids.clone()}
        if args.padded:
            lengths = torch.full((args.batch,), args.seq)
            lengths[1::2] = torch.randint(2, args.seq + 1, (args.batch // 2,), generator=g)
            mask = torch.arange(args.seq)[None, :] < lengths[:, None]
            batch["labels"][~mask] = -100
            batch["attention_mask"] = mask.long()
        out.append({k: v.to(device) for k, v in batch.items()})
    return out


def run(preset: str, args, device) -> None:
    """Benchmark one preset and print the report."""
    uer_model, plain, optim, line = models(preset, args, device)
    data = batches(min(args.steps, 4), args, device)
    with torch.no_grad():
        first = [uer_model.eval()(data[0]).loss.item(), plain.eval()(data[0]).item()]
    real = sum(int((b["labels"] != -100).sum()) for b in data) / len(data)

    def tokens(batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != -100).sum())

    sides = [Side("uer", uer_model, optim, lambda b: uer_model(b).loss, tokens),
             Side("plain torch", plain, optim, plain, tokens)]
    print(f"model {preset}: {line}, vocab {args.vocab_size}; params uer {sides[0].params:,}, plain {sides[1].params:,}")
    print(f"batch {args.batch} x {args.seq} ({'every other row right-padded, ' if args.padded else 'unpadded, '}"
          f"{real:.0f} real tokens a batch on average); {len(data)} batches cycled, the same tensors for both sides")
    print(f"loss before training: uer {first[0]:.4f}, plain {first[1]:.4f} (same weights, eval mode)")
    rates = timed_sides(sides, data, "fp32", args.warmup, args.steps, args.rounds)
    for s in sides:
        print(f"  {s.name:<12} {summary(rates[s.name])} tokens/s (real tokens)")
    ratio = statistics.median(rates["uer"]) / statistics.median(rates["plain torch"])
    print(f"  ratio uer / plain: {ratio:.2f}x\n")


def main() -> None:
    args = parse_args()
    device = start(args)
    print(f"step = forward (causal LM loss), backward, the optimizer uer.train.optim.build_optimizer makes from "
          f"uer's optim config (both sides), zero_grad; fp32; warmup {args.warmup}, then {args.rounds} interleaved "
          f"rounds x {args.steps} timed steps per side, median round\n")
    for preset in args.preset:
        run(preset, args, device)


if __name__ == "__main__":
    main()
