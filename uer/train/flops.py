"""Model FLOPs and MFU (model FLOPs utilization, Chowdhery et al. 2022).

Convention: the FLOPs of one training step are those ``torch.utils.flop_counter.FlopCounterMode``
counts for its forward and backward: every matmul, convolution and attention product actually
executed (so attention's S² term is included and an MLM head counts only masked positions, as
computed). Embedding lookups, norms and elementwise ops are not counted.

MFU is achieved FLOP/s over a peak FLOP/s that stays the same for the whole run (`Peak`):

1. ``trainer.peak_tflops`` when set (e.g. a datasheet figure);
2. else, on a GPU the table below knows (`SPEC_TFLOPS`, by ``torch.cuda.get_device_name``), its
   dense datasheet figure for the precision;
3. else the best of several matmul sizes and repeats (`peak_flops`), cached per machine, device,
   precision and thread count in ``$UER_CACHE/peak_flops.json``, so a busy moment at start does
   not lower it for every later run.

MFU never exceeds 1: a window faster than the peak raises the peak (`Peak.mfu`), and a measured
peak raised this way is written back to the cache.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from uer.preprocess.build import cache_root

CACHE_FILE = "peak_flops.json"
SIZES = {"cpu": (1024, 2048), "cuda": (2048, 4096, 8192)}
"""Square matmul sizes `peak_flops` times per device type (the best rate over all counts)."""
SPEC_TFLOPS = {  # dense (no sparsity) tensor-core figures from NVIDIA's datasheets, in TFLOP/s
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},  # SXM
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3},
    "A10G": {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2},
}
"""GPU name fragment -> precision -> dense peak TFLOP/s. The first fragment found in the device name
wins, so more specific names come first. fp32 is the non-tensor-core figure (torch does not use TF32
for matmuls unless asked)."""
PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
log = logging.getLogger(__name__)


@contextmanager
def count_flops():
    """``with count_flops() as counter: ...``; then ``counter.get_total_flops()`` (int)."""
    counter = FlopCounterMode(display=False)
    with counter:
        yield counter


def device_name(device: torch.device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``), or the CPU model and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} x{torch.get_num_threads()} threads"


def spec_peak(name: str, dtype: torch.dtype) -> float | None:
    """The datasheet peak FLOP/s of the GPU called ``name`` in ``dtype`` (`SPEC_TFLOPS`), or None."""
    for fragment, figures in SPEC_TFLOPS.items():
        if fragment in name:
            return figures.get(PRECISION_NAMES.get(dtype, ""), 0.0) * 1e12 or None
    return None


def peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """The best FLOP/s of (n × n) @ (n × n) matmuls in ``dtype`` on ``device`` over the `SIZES` of its
    type and ``repeats`` each (after a warm-up per size): the practical peak of the machine."""
    generator = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG alone
    best = 0.0
    for size in SIZES.get(device.type, SIZES["cpu"]):
        a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
        b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
        a @ b
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, 2 * size ** 3 / max(time.perf_counter() - start, 1e-9))
    return best


class Peak:
    """The peak FLOP/s MFU is measured against, fixed for a run (see the module docstring).

    Args:
        device, dtype: where and in what precision the model runs.
        tflops: ``trainer.peak_tflops`` (None or 0: the GPU's spec, else the cached measurement).
        cache: the JSON file of measured peaks (default ``$UER_CACHE/peak_flops.json``).
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, tflops: float | None = None,
                 cache: Path | None = None):
        self.cache = cache or cache_root() / CACHE_FILE
        self.key = f"{device_name(device)} {PRECISION_NAMES.get(dtype, str(dtype))}"
        self.measured = False
        if tflops:
            self.flops, self.source = tflops * 1e12, "trainer.peak_tflops"
        elif (spec := spec_peak(self.key, dtype) if device.type == "cuda" else None) is not None:
            self.flops, self.source = spec, "datasheet"
        else:
            cached = self._read().get(self.key)
            self.flops = cached if isinstance(cached, (int, float)) and cached > 0 else peak_flops(device, dtype)
            self.source, self.measured = "measured", True
            if cached != self.flops:
                self._write()

    def mfu(self, achieved: float) -> float:
        """``achieved`` FLOP/s over the peak, at most 1: a faster window raises the peak (a measured
        one is written back to the cache; a configured or datasheet one is warned about)."""
        if achieved > self.flops:
            if not self.measured:
                log.warning("achieved %.3g FLOP/s is above the %s peak %.3g FLOP/s; MFU is capped at 1",
                            achieved, self.source, self.flops)
            self.flops = achieved
            if self.measured:
                self._write()
        return achieved / self.flops

    def _read(self) -> dict:
        try:
            data = json.loads(self.cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        """Store the peak under this machine's key (atomically; a cache that cannot be written only
        costs a new measurement next time)."""
        data = {**self._read(), self.key: self.flops}
        partial = self.cache.with_name(f"{self.cache.name}.{os.getpid()}.tmp")
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(partial, self.cache)
        except OSError as err:
            log.warning("cannot cache the measured peak in %s (%s)", self.cache, err.strerror or err)
