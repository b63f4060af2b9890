"""Build a :class:`~uer.models.model.Model` from its config, refusing code outside allowed packages."""
from __future__ import annotations

from collections.abc import Iterable

from hydra._internal.utils import _locate  # what hydra.utils.get_object wraps, without its error log line
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from uer.errors import UerError
from uer.models.legacy import upgrade_model_config
from uer.models.model import Model

PARTS = ("embedding", "encoder", "target", "tgt_embedding", "decoder")
DEFAULT_ALLOWED = ("uer.",)


def check_targets(cfg, allowed: Iterable[str] = DEFAULT_ALLOWED, where: str = "model") -> None:
    """Raise :class:`UerError` if any ``_target_`` in ``cfg`` (a config or plain dicts/lists, resolved)
    names anything but a class defined under one of the ``allowed`` prefixes.

    A config read from a downloaded checkpoint must not be able to run arbitrary code when it is
    instantiated (DESIGN §3). The dotted path must start with an allowed prefix and have no private
    part (``_name``), and the class Hydra resolves it to must be defined in a module under an allowed
    prefix too: Hydra follows attributes, so ``uer.train.run.os.system`` would otherwise reach
    ``os.system`` through a module's imports.
    """
    allowed = tuple(allowed)
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # noqa: BLE001 - any resolver error; the message names it
            raise UerError(f"{where}: cannot resolve the config ({str(e).splitlines()[0]})") from None
    if isinstance(cfg, dict):
        if "_target_" in cfg:
            _check_target(cfg["_target_"], allowed, f"{where}._target_")
        for key, value in cfg.items():
            if key != "_target_":
                check_targets(value, allowed, f"{where}.{key}")
    elif isinstance(cfg, list):
        for i, item in enumerate(cfg):
            check_targets(item, allowed, f"{where}[{i}]")


def _check_target(target, allowed: tuple[str, ...], where: str) -> None:
    """Raise :class:`UerError` unless ``target`` is a dotted path to a class under ``allowed``."""
    hint = "add its prefix to trainer.allowed_targets if you trust it"
    path = str(target)
    if not path.startswith(allowed) or any(part.startswith("_") or not part for part in path.split(".")):
        raise UerError(f"{where}={path} is outside the allowed packages {list(allowed)}; {hint}")
    try:
        found = _locate(path)
    except Exception:  # noqa: BLE001 - import errors of any kind: the path names nothing usable
        raise UerError(f"{where}={path}: no such class") from None
    module = getattr(found, "__module__", None) or ""
    if not isinstance(found, type) or not f"{module}.".startswith(allowed):
        raise UerError(f"{where}={path} resolves to {module}.{getattr(found, '__qualname__', found)!s}, "
                       f"not a class defined under the allowed packages {list(allowed)}; {hint}")


def build_model(cfg: DictConfig, allowed: Iterable[str] = DEFAULT_ALLOWED) -> Model:
    """Instantiate the parts named in ``cfg`` (a model config: sizes plus ``embedding``,
    ``encoder``, ``target`` and optionally ``tgt_embedding``/``decoder`` sub-configs with
    ``_target_``) and assemble them.

    Raises:
        UerError: a required part is missing, a ``_target_`` is not allowed, an interpolated size is
            missing (e.g. ``vocab_size`` not yet known), or a part rejects its arguments.
    """
    cfg = upgrade_model_config(cfg)  # flat encoder keys of older checkpoints
    check_targets(cfg, allowed)
    for part in ("embedding", "encoder", "target"):
        if cfg.get(part) is None:
            raise UerError(f"model config has no {part}; a preset names one in its defaults list")
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        parts = {p: instantiate(resolved[p], _convert_="all") for p in PARTS if resolved.get(p) is not None}
    except UerError:
        raise
    except Exception as e:  # hydra wraps constructor errors; keep the first line, which names the problem
        msg = [line for line in str(e).strip().splitlines() if not line.startswith("full_key:")]
        raise UerError(f"cannot build the model: {msg[-1] if msg else type(e).__name__}") from e
    return Model(**parts, init_std=resolved.get("init_std", 0.02))
