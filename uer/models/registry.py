"""Which classes a config may name by ``_target_`` (DESIGN §3), checked before anything is built.

Two rules, one per kind of config:

- :func:`check_targets` — any config built with ``hydra.utils.instantiate`` or by class (data
  processors and collators, model parts): the dotted path starts with ``uer.`` or a prefix the user
  trusts (``trainer.allowed_targets``) and names a class defined under that prefix.
- :func:`check_parts` — a ``model`` config (from a preset, the command line or a downloaded
  checkpoint) is further restricted to **model parts**: ``torch.nn.Module`` subclasses that are
  declared as parts. uer's parts are declared by where they live: the part packages
  :data:`PART_PACKAGES` (layers, embeddings, encoders, decoders, targets; DESIGN §1). Nothing else
  of uer can be built from a model config — not ``uer.train.metrics.RunLog``, which opens
  ``metrics.jsonl`` when constructed, nor a processor that writes shards — whatever
  ``trainer.allowed_targets`` says. A user declares their own part by writing an ``nn.Module``
  subclass and listing its module's prefix in ``trainer.allowed_targets`` (e.g. ``[myproject.parts.]``).

A checkpoint's config is resolved before it is checked and holds no interpolations
(:mod:`uer.models.untrusted`), so what is checked is what Hydra builds.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from hydra._internal.utils import _locate  # what hydra.utils.get_object wraps, without its error log line
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from uer.errors import UerError

DEFAULT_ALLOWED = ("uer.",)
"""``_target_`` prefixes trusted without ``trainer.allowed_targets``."""
PART_PACKAGES = ("uer.layers.", "uer.embeddings.", "uer.encoders.", "uer.decoders.", "uer.targets.")
"""The packages whose ``nn.Module`` classes are model parts (the layer factories a Transformer stack
takes as ``_partial_`` targets — attention, feed-forward, norms, rotary — live in ``uer.layers``)."""
HINT = "add its prefix to trainer.allowed_targets if you trust it"


def check_targets(cfg, allowed: Iterable[str] = DEFAULT_ALLOWED, where: str = "model") -> None:
    """Raise :class:`UerError` if any ``_target_`` in ``cfg`` (a config or plain dicts/lists,
    resolved first) names anything but a class defined under one of the ``allowed`` prefixes.

    A config read from a downloaded checkpoint must not be able to run arbitrary code when it is
    instantiated. The dotted path must start with an allowed prefix and have no private part
    (``_name``), and the class Hydra resolves it to must be defined in a module under an allowed
    prefix too: Hydra follows attributes, so ``uer.train.run.os.system`` would otherwise reach
    ``os.system`` through a module's imports.

    Raises:
        UerError: one line naming the key (``model.encoder._target_=...``) and the problem; or the
            config cannot be resolved.
    """
    for _ in _located(cfg, tuple(allowed), where):
        pass


def check_parts(cfg, allowed: Iterable[str] = DEFAULT_ALLOWED, where: str = "model") -> None:
    """:func:`check_targets`, and every class named in the model config ``cfg`` must be a model
    part: an ``nn.Module`` subclass defined in a part package (:data:`PART_PACKAGES`) if it is uer's,
    any ``nn.Module`` subclass under a prefix of ``allowed`` if it is the user's.

    Raises:
        UerError: as :func:`check_targets`, or a class that is not a model part (one line naming
            the key and the class).
    """
    for key, path, found in _located(cfg, tuple(allowed), where):
        name = f"{found.__module__}.{found.__qualname__}"
        ours = f"{found.__module__}.".startswith(DEFAULT_ALLOWED)
        if not issubclass(found, nn.Module) or (ours and not name.startswith(PART_PACKAGES)):
            raise UerError(f"{key}={path} is {name}, not a model part: a model config may name torch.nn.Module "
                           f"classes of {', '.join(p.rstrip('.') for p in PART_PACKAGES)} or under a prefix in "
                           "trainer.allowed_targets")


def _located(cfg, allowed: tuple[str, ...], where: str) -> Iterator[tuple[str, str, type]]:
    """``(key, dotted path, class)`` of every ``_target_`` in ``cfg``, each checked by
    :func:`_check_target` before the next is looked at."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # noqa: BLE001 - any resolver error; the message names it
            raise UerError(f"{where}: cannot resolve the config ({str(e).splitlines()[0]})") from None
    if isinstance(cfg, dict):
        if "_target_" in cfg:
            key = f"{where}._target_"
            yield key, str(cfg["_target_"]), _check_target(cfg["_target_"], allowed, key)
        for name, value in cfg.items():
            if name != "_target_":
                yield from _located(value, allowed, f"{where}.{name}")
    elif isinstance(cfg, list):
        for i, item in enumerate(cfg):
            yield from _located(item, allowed, f"{where}[{i}]")


def _check_target(target, allowed: tuple[str, ...], where: str) -> type:
    """The class ``target`` names, if it is a dotted path to a class under ``allowed``.

    Raises:
        UerError: outside ``allowed``, a private part, no such class, or not a class defined under
            ``allowed``.
    """
    path = str(target)
    if not path.startswith(allowed) or any(part.startswith("_") or not part for part in path.split(".")):
        raise UerError(f"{where}={path} is outside the allowed packages {list(allowed)}; {HINT}")
    try:
        found = _locate(path)
    except Exception:  # noqa: BLE001 - import errors of any kind: the path names nothing usable
        raise UerError(f"{where}={path}: no such class") from None
    module = getattr(found, "__module__", None) or ""
    if not isinstance(found, type) or not f"{module}.".startswith(allowed):
        raise UerError(f"{where}={path} resolves to {module}.{getattr(found, '__qualname__', found)!s}, "
                       f"not a class defined under the allowed packages {list(allowed)}; {HINT}")
    return found
