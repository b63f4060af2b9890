"""A model checkpoint directory (DESIGN §6) without training state: weights and config, saved and
loaded without unpickling code.

::

    model.safetensors        weights (tied parameters stored once)
    config.yaml              the resolved run config; its ``model:`` section builds the model
    tokenizer.json ...       written by the tokenizer object given (``tokenizer.save(directory)``)

Training state (``state/``: optimizer, schedule, RNG, data position) is :mod:`uer.train.checkpoint`,
which writes these files through :func:`save_pretrained`. Reading a directory that may also be a
Hugging Face model, with its tokenizer, is :func:`uer.convert.load_pretrained`.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError, safe_open
from safetensors.torch import _remove_duplicate_names, save_file
from safetensors.torch import load_model as load_safetensors
from torch import nn

from uer.config import resolve
from uer.errors import UerError
from uer.models.build import DEFAULT_ALLOWED, build_model
from uer.models.legacy import upgrade_config
from uer.models.model import Model
from uer.models.registry import check_parts
from uer.models.untrusted import load_yaml

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
"""safetensors dtype names of the floating dtypes a weights file may hold."""


def save_weights(model: nn.Module, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model``'s parameters and buffers (or ``state_dict``, the same names as full tensors,
    e.g. gathered from FSDP2 shards) to a safetensors file, tied tensors once under the name
    ``safetensors.torch.save_model`` keeps, so :func:`load_weights` reads either."""
    if state_dict is None:
        state_dict = model.state_dict()
    else:  # let tied entries share storage again, as in model.state_dict()
        first: dict[int, str] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            state_dict[name] = state_dict[first.setdefault(id(param), name)]
    metadata = {}
    for kept, removed in _remove_duplicate_names(state_dict).items():
        for name in removed:
            metadata[name] = kept
            del state_dict[name]
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata or None)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model`` strictly (values are cast to the model's dtypes).

    Raises:
        UerError: the file is missing, corrupt or truncated, or its keys/shapes differ from the model's
            (the message lists what is missing and what is unexpected).
    """
    if not Path(path).is_file():
        raise UerError(f"{path}: no such weights file")
    try:
        missing, unexpected = load_safetensors(model, str(path), strict=False)
    except (SafetensorError, OSError) as e:
        raise UerError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
        raise UerError(f"{path}: weights do not fit the model ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise UerError(f"{path}: weights do not match the model; missing {sorted(missing)[:5]}, "
                       f"unexpected {sorted(unexpected)[:5]}")


def stored_dtype(path: Path) -> torch.dtype:
    """The floating dtype of a weights file (float32 if it is missing, corrupt or mixed: loading it
    then reports the problem)."""
    try:
        with safe_open(str(path), "pt") as f:
            found = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception:  # noqa: BLE001 - load_weights gives the one-line error
        return torch.float32
    floats = {DTYPES[d] for d in found if d in DTYPES}
    return floats.pop() if len(floats) == 1 else torch.float32


def load_config(directory: Path) -> DictConfig:
    """The ``config.yaml`` of a checkpoint, its model config in today's form
    (:func:`uer.models.legacy.upgrade_config` rewrites that of older checkpoints).

    The file is read as data (:func:`uer.models.untrusted.load_yaml`: size and YAML node limits,
    no interpolations); nothing in it is resolved or built here. Only its ``model`` section is ever
    built, by :func:`load_model` after :func:`uer.models.registry.check_parts`; the other sections
    (``data``, ``trainer``, ``task``, ``convert`` ...) are values that callers read, never
    instantiated.

    Raises:
        UerError: missing, too large, an alias bomb, unreadable, not a mapping, or holding an
            interpolation.
    """
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise UerError(f"{directory}: not a uer checkpoint (no {CONFIG})")
    cfg = load_yaml(path)
    try:
        return upgrade_config(cfg)  # flat encoder keys of older checkpoints
    except Exception as e:  # noqa: BLE001 - a flat stack that lacks its sizes: KeyError, OmegaConf errors
        raise UerError(f"{path}: unreadable model config ({str(e).splitlines()[0]})") from None


def save_pretrained(directory: Path, model: nn.Module, config: DictConfig, tokenizer=None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model``'s weights (or ``state_dict``, see :func:`save_weights`), ``config``
    (resolved) and ``tokenizer`` (if given) into ``directory``, created if needed. Not atomic by
    itself: callers write into a staging directory and rename it (:func:`publish`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / WEIGHTS, state_dict)
    OmegaConf.save(config, directory / CONFIG, resolve=True)
    if tokenizer is not None:
        tokenizer.save(directory)


def publish(staging: Path, directory: Path) -> None:
    """Make the finished ``staging`` directory ``directory`` (replacing an existing one) by renames,
    after fsyncing its files, so a crash at any moment leaves either the old or the new directory,
    complete, never a renamed but half-written one (a power loss included). On an error ``staging``
    is removed and an existing ``directory`` is left as it was.

    Raises:
        UerError: a write or rename failed (the OS error named, see :func:`write_error`).
    """
    staging, directory = Path(staging), Path(directory)
    old = directory.parent / f".old-{directory.name}"
    try:
        _sync_tree(staging)
        remove(old)  # left by a crash between the two renames below; ``directory`` is rewritten anyway
        if directory.exists() or directory.is_symlink():
            os.replace(directory, old)
            try:
                os.replace(staging, directory)
            except BaseException:
                os.replace(old, directory)
                raise
            remove(old)
        else:
            os.replace(staging, directory)
        _sync_tree(directory.parent, recursive=False)
    except Exception as e:  # noqa: BLE001 - made one line by write_error
        remove(staging)
        raise write_error(str(directory), e) from None


def remove(path: Path) -> None:
    """Delete ``path`` if present: a file or symbolic link is unlinked (never followed), a directory
    removed with its contents (``shutil.rmtree``, which unlinks the links inside without following them)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def os_error(e: BaseException) -> str | None:
    """The OS error behind ``e`` as ``<errno symbol>: <text>``, e.g. ``ENOSPC: No space left on
    device`` (disk full), or None: found in ``e``'s chain (``torch.save`` raises a RuntimeError while
    the OSError of its file object is being handled) or in the text of a Rust library's error
    (safetensors, tokenizers: ``... (os error 28)``)."""
    seen: BaseException | None = e
    while seen is not None:
        found = re.search(r"\(os error (\d+)\)", str(seen))
        code = (seen.errno if isinstance(seen, OSError) else None) or (int(found.group(1)) if found else None)
        if code:
            return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
        seen = seen.__cause__ or seen.__context__
    return None


def write_error(what: str, e: BaseException) -> UerError:
    """The one-line error for a failed write of ``what`` (a file or directory, named in the line):
    the OS error behind ``e`` (:func:`os_error`), else ``e``'s type and first line."""
    reason = os_error(e) or f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
    return UerError(f"{what}: write failed ({reason})")


def _sync_tree(root: Path, recursive: bool = True) -> None:
    """fsync the files under ``root`` and the directories themselves."""
    paths = sorted(root.rglob("*")) if recursive else []
    for path in [*paths, root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_model(directory: Path, allowed: Iterable[str] = DEFAULT_ALLOWED,
               dtype: torch.dtype | None = torch.float32) -> tuple[Model, DictConfig]:
    """The model of the uer checkpoint ``directory`` (eval mode, weights loaded strictly) and the
    checkpoint's whole config.

    Every ``_target_`` of the model config must name a model part (an ``nn.Module`` of uer's part
    packages, or under a prefix of ``allowed`` besides ``uer.``: :func:`uer.models.registry.check_parts`),
    checked before anything is built (DESIGN §3). The model is built without touching the global
    RNG (its random initialization is overwritten anyway), so loading a checkpoint never changes
    what a seeded run draws next.

    Args:
        dtype: the parameters' dtype; None keeps the file's (when it holds one floating dtype).

    Raises:
        UerError: not a checkpoint, a config :func:`load_config` refuses, no model section, a
            ``_target_`` that is not an allowed model part, weights missing, corrupt or not fitting
            the model.
    """
    directory = Path(directory)
    cfg = load_config(directory)
    if not isinstance(cfg.get("model"), DictConfig):
        raise UerError(f"{directory / CONFIG}: no model section")
    model_cfg = resolve(cfg.model)
    check_parts(model_cfg, allowed, where=f"{directory / CONFIG}: model")  # before anything is built
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_cfg, allowed)
    model.to(dtype or stored_dtype(directory / WEIGHTS))
    load_weights(model, directory / WEIGHTS)
    return model.eval(), cfg


def model_differences(a: DictConfig, b: DictConfig, prefix: str = "model") -> list[str]:
    """Dotted keys whose values differ between two resolved model configs (the preset's ``name``
    aside), e.g. ``["model.num_layers: 1 vs 2"]``."""
    diffs = []
    for key in sorted((set(a) | set(b)) - ({"name"} if prefix == "model" else set())):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, DictConfig) and isinstance(vb, DictConfig):
            diffs += model_differences(va, vb, f"{prefix}.{key}")
        elif va != vb:
            diffs.append(f"{prefix}.{key}: {va} vs {vb}")
    return diffs
