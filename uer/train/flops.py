"""Model FLOPs and MFU (model FLOPs utilization, Chowdhery et al. 2022).

Convention: the FLOPs of one training step are those ``torch.utils.flop_counter.FlopCounterMode``
counts for its forward and backward: every matmul, convolution and attention product actually
executed (so attention's S² term is included and an MLM head counts only masked positions, as
computed). Embedding lookups, norms and elementwise ops are not counted. MFU is achieved FLOP/s
over the peak FLOP/s of a large matmul measured on the same device in the same precision.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def count_flops():
    """``with count_flops() as counter: ...``; then ``counter.get_total_flops()`` (int)."""
    counter = FlopCounterMode(display=False)
    with counter:
        yield counter


def peak_flops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a (size × size) @ (size × size) matmul in ``dtype`` on ``device`` (best of
    ``repeats`` after a warm-up): the practical peak MFU is measured against."""
    generator = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG alone
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best
