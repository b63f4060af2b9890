"""Range checks of a model config's sizes and rates, before any part is built, so ``model.dim=0``
or ``model.num_heads=5`` (with ``dim=128``) is one line naming the key instead of a traceback from
deep inside a constructor, or a model that silently has no layers.

The rules go by the key's name, the same in every part (DESIGN §1: a size is called the same
everywhere), so a new part's sizes are checked without a list to keep up to date:

==================================================================  =============================
key                                                                  rule
==================================================================  =============================
``dim``, ``*_dim``, ``num_*``, ``*_size``, ``channels``,             an integer >= 1
``max_length``, ``max_seq_length``, ``*_buckets``, ``*_distance``
``offset``                                                           an integer >= 0
``dropout``, ``*_dropout``                                           a number in [0, 1)
``eps``, ``*_eps``, ``init_std``                                     a finite number > 0
==================================================================  =============================

A null value is left to the part (it means "derive it" or "none"). Where a part holds ``dim``
and ``num_heads`` (attention) without an explicit ``head_dim``, ``dim`` must be a multiple of ``num_heads``, and ``num_heads`` a multiple of
``num_kv_heads`` (grouped-query attention, Ainslie et al. 2023).
"""
from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError

COUNTS = ("dim", "channels", "max_length", "max_seq_length")
COUNT_PREFIXES = ("num_",)
COUNT_SUFFIXES = ("_dim", "_size", "_buckets", "_distance")
RATES = ("dropout",)
POSITIVE = ("eps", "init_std")


def rule(key: str) -> str | None:
    """The rule for a model config key (see the module docstring): ``count``, ``index``, ``rate``,
    ``positive``, or None for keys that are not sizes or rates."""
    if key in COUNTS or key.startswith(COUNT_PREFIXES) or key.endswith(COUNT_SUFFIXES):
        return "count"
    if key == "offset":
        return "index"
    if key in RATES or key.endswith("_dropout"):
        return "rate"
    if key in POSITIVE or key.endswith("_eps"):
        return "positive"
    return None


def check_value(where: str, key: str, value) -> None:
    """Raise :class:`UerError` (``<where>.<key>=<value>: must be ...``) if ``value`` breaks the
    :func:`rule` of ``key``; None and keys without a rule pass."""
    kind = rule(key)
    if value is None or kind is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    integer = number and isinstance(value, int)
    ok, need = {
        "count": (integer and value >= 1, "an integer >= 1"),
        "index": (integer and value >= 0, "an integer >= 0"),
        "rate": (number and 0 <= value < 1, "a number in [0, 1)"),
        "positive": (number and math.isfinite(value) and value > 0, "a finite number > 0"),
    }[kind]
    if not ok:
        raise UerError(f"{where}.{key}={value}: must be {need}")


def check_heads(where: str, cfg: dict) -> None:
    """Raise :class:`UerError` if the mapping ``cfg`` has ``dim`` and ``num_heads`` but no
    ``head_dim`` and ``dim`` is not a multiple of ``num_heads``, or ``num_heads`` is not a multiple
    of ``num_kv_heads``."""
    dim, heads, kv = cfg.get("dim"), cfg.get("num_heads"), cfg.get("num_kv_heads")
    if isinstance(heads, int) and isinstance(dim, int) and cfg.get("head_dim") is None and dim % heads:
        raise UerError(f"{where}.dim={dim} is not divisible by {where}.num_heads={heads}; "
                       "choose a multiple or set head_dim")
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        raise UerError(f"{where}.num_heads={heads} is not divisible by {where}.num_kv_heads={kv}")


def check_sizes(model_cfg: DictConfig | dict, where: str = "model") -> None:
    """Check every size and rate of the model config ``model_cfg`` (and of its parts, recursively)
    by :func:`check_value` and :func:`check_heads`, before anything is built. The model's own keys
    come first, so ``model.dim=0`` is reported as ``model.dim`` rather than as the part that
    interpolates it.

    Raises:
        UerError: the first value out of range, naming its full key.
    """
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else model_cfg
    nested = []
    for key, value in cfg.items():
        if isinstance(value, (dict, list)):
            nested.append((f"{where}.{key}", value))
        else:
            check_value(where, str(key), value)
    if "_target_" in cfg:  # a part: the model's own num_heads may be overridden by a part's head_dim
        check_heads(where, cfg)
    for path, value in nested:
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                check_sizes(item, path if isinstance(value, dict) else f"{path}[{i}]")
