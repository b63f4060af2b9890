"""Build a :class:`~uer.models.model.Model` from its config, building nothing but model parts
(:mod:`uer.models.registry`)."""
from __future__ import annotations

from collections.abc import Iterable

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError
from uer.models.adapters import apply_adapters
from uer.models.legacy import upgrade_model_config
from uer.models.model import Model
from uer.models.registry import DEFAULT_ALLOWED, check_parts, check_targets
from uer.models.sizes import check_sizes

__all__ = ["DEFAULT_ALLOWED", "PARTS", "build_model", "check_targets"]  # check_targets: data configs use it too
PARTS = ("embedding", "encoder", "target", "tgt_embedding", "decoder")


def build_model(cfg: DictConfig, allowed: Iterable[str] = DEFAULT_ALLOWED) -> Model:
    """Instantiate the parts named in ``cfg`` (a model config: sizes plus ``embedding``,
    ``encoder``, ``target`` and optionally ``tgt_embedding``/``decoder`` sub-configs with
    ``_target_``) and assemble them.

    Every ``_target_`` must name a model part (:func:`uer.models.registry.check_parts`: an
    ``nn.Module`` of uer's part packages, or of a prefix in ``allowed`` besides ``uer.``); this is
    checked before anything is built, whatever the config's origin (a preset, the command line, a
    checkpoint). A ``model.adapters`` entry then wraps layers of the built model in LoRA and freezes
    the rest (:func:`uer.models.adapters.apply_adapters`).

    Raises:
        UerError: a required part is missing, a ``_target_`` is not an allowed model part, an
            interpolated size is missing (e.g. ``vocab_size`` not yet known), or a part rejects its arguments.
    """
    cfg = upgrade_model_config(cfg)  # flat encoder keys of older checkpoints
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - any resolver error; the message names it
        raise UerError(f"model: cannot resolve the config ({str(e).splitlines()[0]})") from None
    check_parts(resolved, allowed)  # what is checked is what is built
    for part in ("embedding", "encoder", "target"):
        if resolved.get(part) is None:
            raise UerError(f"model config has no {part}; a preset names one in its defaults list")
    check_sizes(resolved)  # sizes and rates in range, before any constructor sees them
    try:
        parts = {p: instantiate(resolved[p], _convert_="all") for p in PARTS if resolved.get(p) is not None}
    except Exception as e:  # hydra wraps constructor errors; keep the first line, which names the problem
        msg = [line for line in str(e).strip().splitlines() if not line.startswith("full_key:")]
        raise UerError(f"cannot build the model: {msg[-1] if msg else type(e).__name__}") from e
    model = Model(**parts, init_std=resolved.get("init_std", 0.02))
    return apply_adapters(model, resolved.get("adapters"))  # LoRA after the base is built and initialized
