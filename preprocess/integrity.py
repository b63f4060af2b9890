"""What preprocessing writes can be trusted later: files made durable with a checksum, checked on use,
and token ids checked against the model's vocabulary before training.

A file's record is ``{"size": bytes, "sha256": hex digest}`` (FIPS 180-4 SHA-256; hashing reads the
file once, about 1 GB/s with the CPU's SHA extensions). Shards keep theirs in their completion marker
(`uer.preprocess.shards`), a dataset directory keeps one per file in ``uer_dataset.json``
(`uer.preprocess.build`). A record is written only after ``fsync``, so it never describes bytes that
a power loss could still take away; `damage` says what no longer matches.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pyarrow as pa

from uer.errors import UerError

IGNORE_INDEX = -100
"""The label that marks a position without a prediction (``torch.nn.CrossEntropyLoss``'s ``ignore_index``)."""


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (new names, renames) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_record(path: Path) -> dict:
    """Flush ``path`` to disk and return its record ``{"size", "sha256"}``."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def tree_records(directory: Path, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{relative path: file_record}`` of every file under ``directory`` except the names in
    ``skip``; the directories are fsynced too."""
    records = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name not in skip:
            records[path.relative_to(directory).as_posix()] = file_record(path)
    for folder in {directory, *(p.parent for p in directory.rglob("*"))}:
        fsync_dir(folder)
    return records


def damage(path: Path, record: dict) -> str | None:
    """What is wrong with ``path`` against its ``record`` (missing, not a regular file, size,
    checksum), or None if it matches. The size is compared first, so only a file of the right size is read."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return f"{path.name} is not a regular file"
        size = info.st_size
        if size != record["size"]:
            return f"{path.name} has {size} bytes, {record['size']} were written"
        with open(path, "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != record["sha256"]:
                return f"{path.name} does not match its checksum"
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, KeyError, TypeError) as err:
        return f"{path.name} cannot be checked ({type(err).__name__})"
    return None


def tree_damage(directory: Path, records: dict[str, dict]) -> str | None:
    """The first file of ``records`` (see `tree_records`) that is damaged under ``directory``, or None.
    A name that leads outside ``directory`` (``..``, an absolute path) counts as damage."""
    root = directory.resolve()
    for name, record in records.items():
        if not (directory / name).resolve().is_relative_to(root):
            return f"{name} lies outside the dataset directory"
        problem = damage(directory / name, record)
        if problem is not None:
            return problem
    return None


def check_token_ids(table: pa.Table, limits: dict[str, tuple[str, int | None]], where: str) -> None:
    """Check that every id of each list column ``limits`` names (``{column: (model key, limit)}``) lies
    in ``[0, limit)`` (``labels`` may also hold `IGNORE_INDEX`); columns absent from ``table`` or
    with a None limit are skipped. Uses Arrow's min/max over the flattened column: about a second per billion ids.

    Raises:
        UerError: ``dataset <where>: <column> holds token id N, outside [0, limit) (...)``, naming the
            model key the limit comes from.
    """
    import pyarrow.compute as pc  # lazy: 0.2-0.5 s to import, and the preprocessing workers never need it

    for column, (key, limit) in limits.items():
        if limit is None or column not in table.column_names:
            continue
        values = pc.list_flatten(table.column(column))
        if column == "labels":
            values = pc.filter(values, pc.not_equal(values, IGNORE_INDEX))
        low, high = pc.min_max(values).values()
        for value in (low.as_py(), high.as_py()):
            if value is not None and not 0 <= value < limit:
                raise UerError(f"dataset {where}: {column} holds token id {value}, outside [0, {limit}) of "
                               f"{key}={limit}; was it built with another tokenizer?")


def check_dataset_ids(dataset, model_cfg) -> None:
    """`check_token_ids` of a loaded ``datasets.Dataset`` against a resolved model config:
    ``input_ids`` below ``model.vocab_size``, ``labels`` (target tokens, ``mt`` data) below
    ``model.tgt_vocab_size`` (``model.vocab_size`` for models without a target vocabulary).
    Models without a vocabulary (images) are not checked.

    Raises:
        UerError: see `check_token_ids`; the dataset is named by its directory.
    """
    vocab = model_cfg.get("vocab_size")
    target_key = "model.tgt_vocab_size" if "tgt_vocab_size" in model_cfg else "model.vocab_size"
    limits = {"input_ids": ("model.vocab_size", vocab),
              "labels": (target_key, model_cfg.get("tgt_vocab_size", vocab))}
    files = dataset.cache_files
    where = str(Path(files[0]["filename"]).parent) if files else "(in memory)"
    check_token_ids(dataset.data.table, limits, where)
