"""Schemas of the non-model config groups, so a typo or a wrong type fails at start with the list
of valid keys (DESIGN §3)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from uer.data.loader import SEED_LIMIT
from uer.errors import UerError

PRECISIONS = ("fp32", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")
STRATEGIES = ("ddp", "fsdp2")


@dataclass
class TrainerConfig:
    """``trainer.*`` keys. Steps count optimizer updates (each of ``accumulation_steps`` batches)."""

    max_steps: int = 30
    output_dir: str = "outputs/run"
    save_every: int = 15
    keep_last: int = 2
    keep_state: int = 1
    resume: str | None = None
    precision: str = "fp32"
    accumulation_steps: int = 1
    grad_clip: float = 1.0
    log_every: int = 5
    eval_every: int = 15
    seed: int = 42
    init_from: str | None = None
    strategy: str = "ddp"
    on_nonfinite: str = "stop"
    max_consecutive_skips: int = 20
    compile: bool = False
    device: str = "auto"
    allowed_targets: list[str] = field(default_factory=list)
    progress: bool = True
    peak_tflops: float | None = None


@dataclass
class OptimConfig:
    """``optim.*`` keys; ``name`` is adamw, adam or sgd (``momentum`` is for sgd only)."""

    name: str = "adamw"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    weight_decay: float = 0.01
    momentum: float = 0.0
    fused: bool | None = None


@dataclass
class SchedulerConfig:
    """``scheduler.*`` keys; ``name`` is one of :data:`uer.train.schedules.SCHEDULES` (linear,
    cosine, constant, ...: ``transformers.get_scheduler``'s shapes). ``warmup_steps`` null means ``warmup_ratio · trainer.max_steps``."""

    name: str = "linear"
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1


def validated(cfg: DictConfig, schema: type, group: str):
    """Merge ``cfg`` onto ``schema``'s defaults and return the typed object.

    Raises:
        UerError: an unknown key (listing the valid ones) or a value of the wrong type.
    """
    valid = [f.name for f in fields(schema)]
    unknown = [k for k in cfg if k not in valid]
    if unknown:
        raise UerError(f"unknown key {group}.{unknown[0]}; valid keys: {', '.join(valid)}")
    try:
        values = OmegaConf.to_container(cfg, resolve=True)  # resolved against the whole run config
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise UerError(f"bad value for {group}.{key}: {str(e).splitlines()[0]}") from None


def require(ok: bool, key: str, value, rule: str) -> None:
    """Raise ``UerError("<key>=<value>: must be <rule>")`` unless ``ok``."""
    if not ok:
        raise UerError(f"{key}={value}: must be {rule}")


def in_unit(x: float, closed: bool = False) -> bool:
    """``x`` in [0, 1) (or [0, 1] when ``closed``); False for NaN."""
    return 0 <= x <= 1 if closed else 0 <= x < 1


def check_trainer(t: TrainerConfig) -> None:
    """Raise :class:`UerError` for values no run can use: non-positive steps, an unknown precision,
    strategy or policy, a negative ``grad_clip`` or ``seed`` (seeds must be < 2**32, what numpy and
    torch's loader workers accept), a CUDA device the machine does not have."""
    if t.precision not in PRECISIONS:
        raise UerError(f"trainer.precision={t.precision}; choose one of {', '.join(PRECISIONS)}")
    for key in ("max_steps", "accumulation_steps", "log_every", "keep_last"):
        if getattr(t, key) < 1:
            raise UerError(f"trainer.{key} must be >= 1, got {getattr(t, key)}")
    for key in ("save_every", "eval_every", "max_consecutive_skips", "keep_state"):
        if getattr(t, key) < 0:
            raise UerError(f"trainer.{key} must be >= 0 (0 = off), got {getattr(t, key)}")
    require(0 <= t.seed < SEED_LIMIT, "trainer.seed", t.seed, f">= 0 and < 2**{SEED_LIMIT.bit_length() - 1}")
    require(math.isfinite(t.grad_clip) and t.grad_clip >= 0, "trainer.grad_clip", t.grad_clip, ">= 0 (0 = off)")
    check_device(t.device, "trainer.device")
    require(t.peak_tflops is None or (math.isfinite(t.peak_tflops) and t.peak_tflops > 0), "trainer.peak_tflops",
            t.peak_tflops, "> 0 (TFLOP/s), or null")
    if t.strategy not in STRATEGIES:
        raise UerError(f"trainer.strategy={t.strategy}; choose one of {', '.join(STRATEGIES)}")
    if t.on_nonfinite not in NONFINITE_POLICIES:
        raise UerError(f"trainer.on_nonfinite={t.on_nonfinite}; choose one of {', '.join(NONFINITE_POLICIES)}")


def check_device(name: str, key: str) -> None:
    """Raise :class:`UerError` unless ``name`` is ``auto``, ``cpu``, or a CUDA device (``cuda``,
    ``cuda:N``) that this machine has; ``key`` names the option in the message."""
    if name in ("auto", "cpu"):
        return
    index = name[len("cuda:"):] if name.startswith("cuda:") else "0" if name == "cuda" else None
    if index is None or not index.isdigit():
        raise UerError(f"{key}={name}; choose auto, cpu or cuda")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UerError(f"{key}={name}: no CUDA device is available")
    require(int(index) < count, key, name, f"one of the {count} CUDA devices (cuda:0 ... cuda:{count - 1})")


def check_optim(o: OptimConfig) -> None:
    """Raise :class:`UerError` (naming the key) for a learning rate or ``eps`` that is not a finite
    number > 0, ``betas`` not two numbers in [0, 1), a ``momentum`` outside [0, 1), or a negative
    ``weight_decay`` (the ranges torch.optim's Adam, AdamW and SGD accept, NaN and inf excluded)."""
    require(math.isfinite(o.lr) and o.lr > 0, "optim.lr", o.lr, "> 0")
    require(math.isfinite(o.eps) and o.eps > 0, "optim.eps", o.eps, "> 0")
    require(len(o.betas) == 2 and all(in_unit(b) for b in o.betas), "optim.betas", o.betas,
            "two numbers in [0, 1)")
    require(in_unit(o.momentum), "optim.momentum", o.momentum, "in [0, 1)")
    require(math.isfinite(o.weight_decay) and o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, ">= 0")


def check_scheduler(s: SchedulerConfig) -> None:
    """Raise :class:`UerError` for a ``warmup_ratio`` outside [0, 1] or a negative ``warmup_steps``."""
    require(in_unit(s.warmup_ratio, closed=True), "scheduler.warmup_ratio", s.warmup_ratio, "in [0, 1]")
    if s.warmup_steps is not None:
        require(s.warmup_steps >= 0, "scheduler.warmup_steps", s.warmup_steps, ">= 0 (null = warmup_ratio)")
