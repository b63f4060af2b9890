"""Targets: ``forward(hidden: (B, S, D), batch) -> TargetOutput`` and ``num_items(batch)``."""
from uer.targets.cls import ClsTarget
from uer.targets.lm import LmTarget
from uer.targets.mlm import MlmTarget
from uer.targets.output import LossTerm, TargetOutput
from uer.targets.sp import SpTarget
from uer.targets.targets import Targets

__all__ = ["ClsTarget", "LmTarget", "LossTerm", "MlmTarget", "SpTarget", "TargetOutput", "Targets"]
