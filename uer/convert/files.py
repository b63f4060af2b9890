"""Reading Hugging Face model directories and writing a conversion's output atomically."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.pretrained import os_error, write_error

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
PASSED_THROUGH = ("preprocessor_config.json",)
"""Files copied as they are in both directions (an image model's preprocessing settings)."""


def kind_of(path: Path) -> str:
    """``"uer"`` for a uer checkpoint (config.yaml), ``"hf"`` for a Hugging Face model (config.json).

    Raises:
        UerError: ``path`` is not a directory, or holds neither file.
    """
    path = Path(path)
    if not path.is_dir():
        raise UerError(f"{path}: {'is a file' if path.exists() else 'no such directory'}, expected a model directory")
    if (path / "config.yaml").is_file():
        return "uer"
    if (path / "config.json").is_file():
        return "hf"
    raise UerError(f"{path}: neither a uer checkpoint (config.yaml) nor a Hugging Face model (config.json)")


def read_hf_weights(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model directory: ``model.safetensors``, sharded safetensors
    (``model.safetensors.index.json``) or ``pytorch_model.bin`` (loaded with ``weights_only``).

    Raises:
        UerError: no weights file, or one that is corrupt or truncated (the message names it).
    """
    src = Path(src)
    found = next((src / name for name in WEIGHT_FILES if (src / name).is_file()), None)
    if found is None:
        raise UerError(f"{src}: no weights ({', '.join(WEIGHT_FILES)})")
    if found.name == "pytorch_model.bin":
        try:
            return dict(torch.load(found, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 - pickle, zip and weights_only errors share no base
            raise UerError(f"{found}: not a readable PyTorch weights file ({_first_line(e)})") from None
    shards = [found]
    if found.name.endswith(".index.json"):
        try:
            index = json.loads(found.read_text(encoding="utf-8"))
            shards = [src / name for name in sorted(set(index["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UerError(f"{found}: not a readable safetensors index ({_first_line(e)})") from None
    tensors = {}
    for shard in shards:
        try:
            tensors.update(load_file(shard))
        except (SafetensorError, OSError) as e:
            raise UerError(f"{shard}: not a readable safetensors file ({_first_line(e)})") from None
    return tensors


def read_hf_tokenizer(src: Path):
    """The tokenizer of a Hugging Face model directory as a :class:`uer.data.tokenizer.Tokenizer`:
    ``tokenizer.json``, else a SentencePiece ``spiece.model`` / ``sentencepiece.bpe.model`` (a
    ``vocab.json`` beside it, Speech2TextTokenizer's, numbers the pieces as the model does), else
    ``vocab.json`` + ``merges.txt`` or ``vocab.txt``; None when the directory has none of them.

    Raises:
        UerError: a tokenizer file that cannot be read.
    """
    src = Path(src)
    if (src / "tokenizer.json").is_file():
        return Tokenizer.load(src)
    for name in ("spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt"):
        if (src / name).is_file():
            return Tokenizer.load(src / name)
    return None


def copy_passed_through(src: Path, dst: Path) -> None:
    """Copy the :data:`PASSED_THROUGH` files that ``src`` has into ``dst``."""
    for name in PASSED_THROUGH:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)


@contextlib.contextmanager
def staged(dst: Path) -> Iterator[Path]:
    """Yield a path (not yet created) in a staging directory beside ``dst``; what the caller writes
    there becomes ``dst`` by one rename on success and is removed on any error, so ``dst`` is either
    complete or absent.

    Raises:
        UerError: ``dst`` already exists, its parent cannot be written, or a write failed (the OS
            error named, e.g. ``ENOSPC``: disk full).
    """
    dst = Path(dst)
    if dst.exists():
        raise UerError(f"{dst}: already exists; choose a new destination")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    except OSError as e:
        raise UerError(f"{dst}: cannot write ({e.strerror or e})") from None
    try:
        try:
            yield work / "out"
        except Exception as e:  # a write that failed (disk full ...): one line; anything else as it is
            if isinstance(e, UerError) or os_error(e) is None:
                raise
            raise write_error(str(dst), e) from None
        try:
            os.replace(work / "out", dst)
        except OSError as e:
            raise UerError(f"{dst}: cannot create ({e.strerror or e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
