"""Build a :class:`~uer.models.model.Model` from its config, refusing code outside allowed packages."""
from __future__ import annotations

from collections.abc import Iterable

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from uer.errors import UerError
from uer.models.model import Model

PARTS = ("embedding", "encoder", "target", "tgt_embedding", "decoder")
DEFAULT_ALLOWED = ("uer.",)


def check_targets(cfg, allowed: Iterable[str] = DEFAULT_ALLOWED, where: str = "model") -> None:
    """Raise :class:`UerError` if any ``_target_`` in ``cfg`` is outside the ``allowed`` prefixes.

    A config read from a downloaded checkpoint must not be able to run arbitrary code when it is
    instantiated, so every class it names must live under a trusted package prefix.
    """
    allowed = tuple(allowed)
    if isinstance(cfg, DictConfig):
        target = cfg.get("_target_")
        if target is not None and not str(target).startswith(allowed):
            raise UerError(f"{where}._target_={target} is outside the allowed packages {list(allowed)}; "
                           "add its prefix to trainer.allowed_targets if you trust it")
        for key in cfg:
            if key != "_target_":
                check_targets(cfg._get_node(key), allowed, f"{where}.{key}")
    elif isinstance(cfg, ListConfig):
        for i, item in enumerate(cfg):
            check_targets(item, allowed, f"{where}[{i}]")


def build_model(cfg: DictConfig, allowed: Iterable[str] = DEFAULT_ALLOWED) -> Model:
    """Instantiate the parts named in ``cfg`` (a model config: sizes plus ``embedding``,
    ``encoder``, ``target`` and optionally ``tgt_embedding``/``decoder`` sub-configs with
    ``_target_``) and assemble them.

    Raises:
        UerError: a required part is missing, a ``_target_`` is not allowed, an interpolated size is
            missing (e.g. ``vocab_size`` not yet known), or a part rejects its arguments.
    """
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
        msg = str(e).strip().splitlines()
        raise UerError(f"cannot build the model: {msg[-1] if msg else type(e).__name__}") from e
    return Model(**parts, init_std=resolved.get("init_std", 0.02))
