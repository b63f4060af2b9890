"""Composing the run config from the packaged Hydra configs and command-line overrides."""
from __future__ import annotations

import importlib.resources
from datetime import datetime

from hydra import compose, initialize_config_module
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from uer.errors import UerError

if not OmegaConf.has_resolver("now"):  # Hydra registers it only under @hydra.main
    OmegaConf.register_new_resolver("now", lambda fmt: datetime.now().strftime(fmt), use_cache=True)


CHECKED_GROUPS = ("data.", "trainer.", "optim.", "scheduler.")
"""Override prefixes whose keys are validated against a schema after composition."""


def presets() -> list[str]:
    """Names of the model presets (``conf/model/*.yaml``)."""
    root = importlib.resources.files("uer.conf") / "model"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def compose_config(overrides: list[str], config_name: str = "pretrain", need_model: bool = True) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides (``+model=bert_base data.seq_length=64``).

    Raises:
        UerError: no ``+model=<preset>`` (or ``model=`` without the ``+``), an unknown preset, an
            unknown key or group option, or a malformed override; the message lists the choices.
    """
    names = presets()
    model_args = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "model"]
    if need_model:
        if not model_args:
            raise UerError(f"no model chosen; pass +model=<preset>, one of: {', '.join(names)}")
        arg = model_args[-1]
        if not arg.startswith("+"):
            raise UerError(f"write +{arg} (with a '+': the model is added, not overridden); "
                           f"presets: {', '.join(names)}")
        if arg.split("=", 1)[1] not in names:
            raise UerError(f"unknown model preset {arg.split('=', 1)[1]!r}; presets: {', '.join(names)}")
    # let a misspelled key through to the schema checks, whose errors list the valid keys (Hydra's
    # would suggest adding the typo with '+'); model keys stay strict: Hydra names the bad key
    overrides = [f"++{o}" if o.startswith(CHECKED_GROUPS) else o for o in overrides]
    try:
        with initialize_config_module("uer.conf", version_base=None):
            cfg = compose(config_name, overrides=overrides)
    except MissingConfigException as e:
        raise UerError(f"no config {e.missing_cfg_file}; available: {', '.join(e.options or [])}") from None
    except (HydraException, OmegaConfBaseException) as e:
        text = str(e).split("Config search path")[0]
        lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
        raise UerError("; ".join(lines[:2]) if lines else type(e).__name__) from None
    return cfg


def resolve(cfg: DictConfig) -> DictConfig:
    """A resolved copy of ``cfg`` (interpolations evaluated).

    Raises:
        UerError: an interpolation points at a missing key.
    """
    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as e:
        raise UerError(f"cannot resolve the config: {str(e).splitlines()[0]}") from None
