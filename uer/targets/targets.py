"""The target container: several objectives on one hidden state, their losses weighted and summed."""
from __future__ import annotations

import torch
from torch import nn

from uer.targets.output import TargetOutput


class Targets(nn.Module):
    """Holds named targets (``mlm``, ``sp`` ...) as submodules and combines their outputs.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput`` with loss Σ_t w_t · mean loss_t, terms
    keyed by target name and metrics ``<name>/<metric>``. Each child's own output must carry exactly
    one term; it is renamed to the child's name here.

    Args:
        weights: name -> loss weight (default 1 for each).
        **targets: name -> target module; each has ``forward(hidden, batch) -> TargetOutput`` and
            ``num_items(batch) -> Tensor``.

    Raises:
        ValueError: no targets, or a weight for a name that is not a target.
    """

    def __init__(self, weights: dict[str, float] | None = None, **targets: nn.Module):
        super().__init__()
        if not targets:
            raise ValueError("Targets needs at least one target")
        weights = dict(weights or {})
        unknown = set(weights) - set(targets)
        if unknown:
            raise ValueError(f"loss weights for unknown targets {sorted(unknown)}; targets: {sorted(targets)}")
        self.names = list(targets)
        self.weights = {n: float(weights.get(n, 1.0)) for n in self.names}
        for name, module in targets.items():
            self.add_module(name, module)

    def num_items(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Target name -> number of predictions in ``batch`` (scalar tensors)."""
        return {n: getattr(self, n).num_items(batch) for n in self.names}

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        terms, metrics, logits = {}, {}, {}
        for name in self.names:
            out = getattr(self, name)(hidden, batch)
            (term,) = out.terms.values()
            term.weight = self.weights[name]
            terms[name] = term
            prefix = next(iter(out.terms)) + "/"
            metrics.update({name + "/" + k.removeprefix(prefix): v for k, v in out.metrics.items()})
            logits[name] = next(iter(out.logits.values()))
        loss = sum(t.weight * t.loss_sum / t.num_items.clamp(min=1) for t in terms.values())
        return TargetOutput(loss=loss, terms=terms, metrics=metrics, logits=logits)
