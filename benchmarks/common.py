"""What every benchmark shares: the setup line, interleaved timing rounds, and one timed training side.

Timing convention (all benchmarks): the compared sides alternate in ``rounds`` rounds, the order
flipping every round, and the median round of each side is reported, so machine noise (other jobs
on a shared CPU, thermal state) hits both sides alike. The benchmarks import this file as a sibling
module (``python benchmarks/<name>.py`` puts ``benchmarks/`` on ``sys.path``).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import transformers

from uer.convert import engine
from uer.convert.configs import export_head, hf_config_for
from uer.train.config import OptimConfig
from uer.train.flops import count_flops
from uer.train.optim import build_optimizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""``--precision`` names -> the autocast dtype (fp32: no autocast)."""


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


def environment(threads: int | None = None) -> str:
    """One line naming the library versions, the torch thread count and the CPU."""
    threads = torch.get_num_threads() if threads is None else threads
    return (f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} torch threads, "
            f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")


def converted_peer(model_cfg, model: torch.nn.Module, tokenizer=None) -> torch.nn.Module:
    """The ``transformers`` model that ``uer-convert`` exports ``model`` as, holding ``model``'s own
    weights: its config from :func:`uer.convert.configs.hf_config_for` (SDPA attention where the
    architecture has it; transformers' S2T has only its eager attention), its tensors
    mapped by the converter's spec (every tensor of the peer but its tied copies).

    Args:
        model_cfg: the resolved uer model config of ``model``.
        tokenizer: anything with ``{pad,bos,eos,unk}_token_id`` attributes, for the families whose
            config holds token ids (S2T's decoder start), or None.

    Raises:
        UerError: no transformers architecture expresses ``model_cfg``.
        SystemExit: the peer does not take the converted tensors.
    """
    family, head = export_head(model_cfg, None, None)
    config = hf_config_for(family, head, model_cfg, {}, tokenizer, torch.float32)
    architecture = getattr(transformers, head.architecture)
    config._attn_implementation = "sdpa" if architecture._supports_sdpa else "eager"
    peer = architecture(config)
    tensors, _ = engine.to_hf(family, head, model, engine.num_layers(model_cfg))
    missing, unexpected = peer.load_state_dict(tensors, strict=False)
    if unexpected or set(missing) - set(head.tied):
        raise SystemExit(f"{head.architecture} does not take the converted weights: missing {missing}, "
                         f"unexpected {unexpected}")
    peer.tie_weights()
    return peer


def interleaved(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every ``runs[name]()`` (which returns a rate, e.g. tokens/s) once per round, in dict order
    on even rounds and reversed on odd ones. Returns ``{name: [rate of round 0, 1, ...]}``."""
    names = list(runs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            rates[name].append(runs[name]())
    return rates


def start(args: argparse.Namespace) -> torch.device:
    """What every training benchmark does first: no hub access, ``--threads`` torch threads, the
    setup line printed; returns ``--device`` (cpu where the script has no such option)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    device = getattr(args, "device", "cpu")
    print(environment(args.threads) + f", device {device}")
    return torch.device(device)


def timed_sides(sides: list["Side"], batches: list[dict[str, torch.Tensor]], precision: str, warmup: int,
                steps: int, rounds: int) -> dict[str, list[float]]:
    """``warmup`` untimed steps per side (cycling ``batches``), then :func:`interleaved` rounds of
    ``steps`` timed steps per side. Returns ``{side name: [rate of round 0, 1, ...]}`` (samples of
    the first batch's kind per second, as :meth:`Side.rate`)."""
    for s in sides:
        for i in range(warmup):
            s.step(batches[i % len(batches)], precision)
    return interleaved({s.name: (lambda s=s: s.rate(batches, steps, precision)) for s in sides}, rounds)


def add_timing_args(p: argparse.ArgumentParser, steps: int, rounds: int) -> None:
    """``--rounds`` and ``--threads`` (every benchmark), ``--steps`` with the given default."""
    p.add_argument("--steps", type=int, default=steps, help="timed steps per side per round")
    p.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds; the median is reported")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")


def summary(rates: list[float]) -> str:
    """``"<median> (rounds: r0, r1, ...)"``; integers, or one decimal where the median is below 100."""
    median = statistics.median(rates)
    digits = 1 if median < 100 else 0
    return f"{median:9.{digits}f} (rounds: {', '.join(f'{x:.{digits}f}' for x in rates)})"


def ratio(ours: list[float], theirs: list[float]) -> str:
    """``"<ratio of the medians>x (per round: r0, r1, ...; their median <m>x)"``: the ratio of the
    two sides' median rates, and each round's own ratio (the two sides of a round ran back to back,
    so a round's ratio holds even where the machine's load changed between rounds)."""
    rounds = [a / b for a, b in zip(ours, theirs)]
    return (f"{statistics.median(ours) / statistics.median(theirs):.2f}x (per round: "
            f"{', '.join(f'{r:.2f}' for r in rounds)}; their median {statistics.median(rounds):.2f}x)")


class Side:
    """One model under training: ``step(batch, precision)`` is forward, backward, optimizer step and
    ``zero_grad(set_to_none=True)``; bf16 wraps the forward in ``torch.autocast(<device type>,
    bfloat16)`` as uer's trainer does. The model and the batches must already be on one device.

    Args:
        name: label in the report.
        model: put in train mode (dropout active).
        optim: the optimizer config; the optimizer is ``uer.train.optim.build_optimizer(model, optim)``
            for every side, whatever the model's library (two groups, no decay on vectors; fused AdamW
            on CPU).
        loss: ``loss(batch) -> scalar tensor``, the model's training loss for a batch.
        items: ``items(batch) -> int``, what the rate counts (tokens B·S, or images B).
    """

    def __init__(self, name: str, model: torch.nn.Module, optim: OptimConfig,
                 loss: Callable[[dict], torch.Tensor], items: Callable[[dict], int]):
        self.name, self.model, self.loss, self.items = name, model.train(), loss, items
        self.device = next(model.parameters()).device
        self.optimizer = build_optimizer(model, optim)
        self.params = sum(p.numel() for p in model.parameters())

    def forward_backward(self, batch: dict[str, torch.Tensor], precision: str) -> None:
        ctx = torch.autocast(self.device.type, dtype=DTYPES[precision]) if precision != "fp32" else nullcontext()
        with ctx:
            loss = self.loss(batch)
        loss.backward()

    def step(self, batch: dict[str, torch.Tensor], precision: str) -> None:
        self.forward_backward(batch, precision)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def flops(self, batch: dict[str, torch.Tensor], precision: str) -> int:
        """FLOPs of one forward + backward (``uer.train.flops.count_flops``: the matmuls, convolutions
        and attention products executed); gradients are cleared, weights untouched."""
        with count_flops() as counter:
            self.forward_backward(batch, precision)
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    def rate(self, batches: list[dict[str, torch.Tensor]], steps: int, precision: str) -> float:
        """Items per second over ``steps`` steps cycling through ``batches`` (on CUDA the clock starts
        and stops at a ``synchronize``, so exactly the kernels of these steps are counted)."""
        items = sum(self.items(batches[i % len(batches)]) for i in range(steps))
        self.synchronize()
        start = time.perf_counter()
        for i in range(steps):
            self.step(batches[i % len(batches)], precision)
        self.synchronize()
        return items / (time.perf_counter() - start)

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA); a no-op on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
