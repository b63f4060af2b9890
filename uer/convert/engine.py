"""The one engine that applies a family spec to tensors, in either direction, strictly.

Import (Hugging Face -> uer): every tensor of the source must be claimed by a rule, a tie, a
buffer pattern or the head's list of tensors transformers does not load either, and every tensor a
rule names must be there; the result must cover the uer model's
parameters exactly, with the shapes the uer config gives them. Export (uer -> Hugging Face) is the
same in reverse. Any gap is a :class:`UerError` that lists the keys.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from uer.convert.spec import Family, Head, Rule
from uer.errors import UerError


def listing(keys, limit: int = 6) -> str:
    """``[a, b, c] (+N more)``: a short, one-line list of keys."""
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more


def rules_for(family: Family, head: Head, layers: dict[str, int]) -> list[Rule]:
    """The family's body and ``head`` rules with each layer placeholder expanded over its stack's
    layers (``{i}``: encoder, ``{j}``: decoder, ``{f}``/``{s}``: two towers; see :func:`num_layers`)
    and the base-model prefix removed from HF names when ``head.base_model``."""
    out = []
    for rule in family.body + head.rules:
        key = next((k for k in layers if "{" + k + "}" in rule.uer), None)
        for n in range(layers[key]) if key else [None]:
            hf = tuple(name.format(**{key: n}) if key else name for name in rule.hf)
            if head.base_model:
                hf = tuple(name.removeprefix(family.prefix) for name in hf)
            out.append(Rule(hf, rule.uer.format(**{key: n}) if key else rule.uer, rule.transform, rule.optional))
    return out


def hf_tied(family: Family, head: Head) -> dict[str, str]:
    """HF tied tensor -> its source, with the prefix handling of :func:`rules_for`."""
    if not head.base_model:
        return dict(head.tied)
    return {k.removeprefix(family.prefix): v.removeprefix(family.prefix) for k, v in head.tied.items()}


def uer_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without the tied copies (``decoder.weight`` of a tied MLM head):
    the tensors a conversion must account for, each once."""
    tied = {f"{name}.{local}" if name else local
            for name, module in model.named_modules() for local in getattr(module, "tied_weights", {})}
    return {k: v for k, v in model.state_dict().items() if k not in tied}


def num_layers(model_cfg) -> dict[str, int]:
    """What the rules' layer placeholders run over: ``{"i": distinct encoder layers (1 when ALBERT
    shares them), "j": decoder layers (0 without a decoder)}``; for a two-tower encoder
    (:class:`uer.encoders.DualEncoder`) ``"f"`` and ``"s"``, the layers of its first and second stack
    (the first again when the towers share one), in place of ``"i"``; ``"c"``, the convolutions of a
    waveform feature encoder (``model.conv_dim``), where there is one."""
    encoder, decoder = model_cfg.encoder, model_cfg.get("decoder")
    out = {"j": decoder.num_layers if decoder is not None else 0}
    if model_cfg.get("conv_dim") is not None:  # "c": a waveform feature encoder's convolutions (wav2vec 2.0)
        out["c"] = len(model_cfg.conv_dim)
    if "first" in encoder:
        out.update(f=_distinct(encoder.first), s=_distinct(encoder.get("second") or encoder.first))
    else:
        out["i"] = _distinct(encoder)
    return out


def _distinct(stack) -> int:
    return 1 if stack.get("share_layers") else stack.num_layers


def match_hf(family: Family, head: Head, tensors: dict[str, torch.Tensor], layers: dict[str, int],
             where: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Check that HF ``tensors`` are exactly ``head``'s with ``layers`` (:func:`num_layers`), once buffers
    (``family.ignored``) and tied copies are set aside.

    Returns:
        (the tensors under the rules' names, the names of ``head.unused`` tensors that were present:
        tensors transformers' own ``head`` class does not load either, such as the pooler shipped in
        RoBERTa's MLM checkpoints).

    Raises:
        UerError: missing or unmapped tensors, or tied tensors that differ (``where`` names the source).
    """
    if head.base_model and tensors and all(k.startswith(family.prefix) for k in tensors):
        tensors = {k.removeprefix(family.prefix): v for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items() if not any(re.search(p, k) for p in family.ignored)}
    for tied, source in hf_tied(family, head).items():
        if tied in tensors:
            if source in tensors and not torch.equal(tensors[tied], tensors[source]):
                raise UerError(f"{where}: {tied} differs from {source}; uer ties them, so untied weights "
                               "cannot be converted")
            tensors.setdefault(source, tensors.pop(tied))  # old files may hold only the tied name
    unused = sorted(k for k in tensors if k in head.unused)
    rules = rules_for(family, head, layers)
    expected = {name for rule in rules for name in rule.hf}
    required = {name for rule in rules if not rule.optional for name in rule.hf}
    missing, unmapped = required - tensors.keys(), tensors.keys() - expected - set(unused)
    if missing or unmapped:
        parts = [f"{name} {listing(keys)}" for name, keys in (("missing", missing), ("unmapped", unmapped)) if keys]
        raise UerError(f"{where}: weights do not match {head.architecture} with this config.json: "
                       f"{', '.join(parts)}")
    return {k: v for k, v in tensors.items() if k in expected}, unused


def to_uer(family: Family, head: Head, tensors: dict[str, torch.Tensor], model: nn.Module,
           layers: dict[str, int], where: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map ``tensors`` (as returned by :func:`match_hf`) onto ``model``'s parameters.

    Returns:
        (uer name -> tensor, the uer names the architecture lacks, left as initialized).

    Raises:
        UerError: shapes that contradict the config (``where`` names the source in the message).
    """
    rules = [r for r in rules_for(family, head, layers) if not r.optional or all(n in tensors for n in r.hf)]
    state = {rule.uer: rule.transform.to_uer([tensors[n] for n in rule.hf]) for rule in rules}
    targets = uer_tensors(model)
    fresh = [k for k in targets if k.startswith(head.uer_only)] if head.uer_only else []
    _check_cover(targets, state, fresh, head)
    wrong = [f"{r.hf[0]}{' (fused)' if len(r.hf) > 1 else ''}: weights {tuple(state[r.uer].shape)}, config "
             f"{tuple(targets[r.uer].shape)}" for r in rules if state[r.uer].shape != targets[r.uer].shape]
    if wrong:
        raise UerError(f"{where}: the sizes in config.json contradict the weights in {len(wrong)} tensors, "
                       f"e.g. {'; '.join(wrong[:2])}")
    return state, fresh


def to_hf(family: Family, head: Head, model: nn.Module, layers: dict[str, int]
          ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map ``model``'s parameters onto ``head``'s HF tensors (ties not stored, contiguous).

    Returns:
        (HF name -> tensor, the uer names the architecture has no place for, dropped).

    Raises:
        UerError: a uer parameter without a rule, or a rule whose parameter the model lacks.
    """
    state = uer_tensors(model)
    rules = [r for r in rules_for(family, head, layers) if not r.optional or r.uer in state]
    dropped = [k for k in state if k.startswith(head.uer_only)] if head.uer_only else []
    _check_cover(state, {r.uer: None for r in rules}, dropped, head)
    out = {}
    for rule in rules:
        out.update(zip(rule.hf, rule.transform.bound(model, rule.uer).to_hf(state[rule.uer].detach()), strict=True))
    return {k: v.contiguous() for k, v in out.items()}, dropped


def _check_cover(targets: dict, mapped: dict, exempt: list[str], head: Head) -> None:
    """The rules' uer names must be exactly the model's parameters less the ``exempt`` ones."""
    unmapped = targets.keys() - mapped.keys() - set(exempt)
    unknown = mapped.keys() - targets.keys()
    if unmapped or unknown:
        raise UerError(f"the uer model does not fit {head.architecture}: parameters without a place "
                       f"{listing(unmapped)}, expected but absent {listing(unknown)}")
