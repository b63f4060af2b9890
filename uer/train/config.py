"""Schemas of the non-model config groups, so a typo or a wrong type fails at start with the list
of valid keys (DESIGN §3)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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
    """``scheduler.*`` keys; ``name`` is a ``transformers.get_scheduler`` name (linear, cosine,
    constant, ...). ``warmup_steps`` null means ``warmup_ratio · trainer.max_steps``."""

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


def check_trainer(t: TrainerConfig) -> None:
    """Raise :class:`UerError` for values no run can use (non-positive steps, unknown precision)."""
    if t.precision not in PRECISIONS:
        raise UerError(f"trainer.precision={t.precision}; choose one of {', '.join(PRECISIONS)}")
    for key in ("max_steps", "accumulation_steps", "log_every", "keep_last"):
        if getattr(t, key) < 1:
            raise UerError(f"trainer.{key} must be >= 1, got {getattr(t, key)}")
    for key in ("save_every", "eval_every", "max_consecutive_skips"):
        if getattr(t, key) < 0:
            raise UerError(f"trainer.{key} must be >= 0 (0 = off), got {getattr(t, key)}")
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise UerError(f"trainer.device={t.device}; choose auto, cpu or cuda")
    if t.strategy not in STRATEGIES:
        raise UerError(f"trainer.strategy={t.strategy}; choose one of {', '.join(STRATEGIES)}")
    if t.on_nonfinite not in NONFINITE_POLICIES:
        raise UerError(f"trainer.on_nonfinite={t.on_nonfinite}; choose one of {', '.join(NONFINITE_POLICIES)}")
