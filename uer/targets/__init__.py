"""Targets: ``forward(hidden: (B, S, D), batch) -> TargetOutput`` and ``num_items(batch)``."""
from uer.targets.bilm import BilmTarget
from uer.targets.cls import ClsTarget
from uer.targets.clr import ClrTarget
from uer.targets.cosine import CosineTarget
from uer.targets.itm import ItmTarget
from uer.targets.lm import LmTarget
from uer.targets.mlm import MlmTarget
from uer.targets.output import LossTerm, TargetOutput
from uer.targets.seq_cls import SeqClsTarget
from uer.targets.sp import SpTarget
from uer.targets.span import SpanTarget
from uer.targets.targets import Targets
from uer.targets.token_cls import TokenClsTarget

__all__ = ["BilmTarget", "ClrTarget", "ClsTarget", "CosineTarget", "ItmTarget", "LmTarget", "LossTerm", "MlmTarget", "SeqClsTarget", "SpTarget",
           "SpanTarget", "TargetOutput", "Targets", "TokenClsTarget"]
