"""Build a preprocessed dataset directory, cached by content, and load one back.

A dataset directory is self-contained and loadable by ``datasets.load_from_disk`` too::

    <dir>/data-00000-of-00001.arrow, dataset_info.json, state.json   (datasets.Dataset.save_to_disk)
    <dir>/tokenizer/                                                  (Tokenizer.save; text processors)
    <dir>/uer_dataset.json                                            (metadata, written last)

``uer_dataset.json`` records the size and SHA-256 of every other file (``files``;
`uer.preprocess.integrity`), written after they are fsynced; `load_dataset_dir` checks them, and a
cached dataset that no longer matches is built again, with a warning.

The cache key is the sha256 of (format version, processor options except corpus/tokenizer/num_proc,
sha256 of the source's bytes, tokenizer fingerprint), so equal inputs give the same key wherever the
files lie. The default location is ``$UER_CACHE/datasets/<key>`` (``UER_CACHE`` defaults to
``~/.cache/uer``). A directory is built in a temporary sibling and moved in place with ``os.replace``,
so a crash never leaves a directory that looks complete; such siblings left by a process that no
longer runs (SIGKILL) are removed by the next build beside them.

Shards are written one file each to ``$UER_CACHE/shards/<key>/`` as they complete, with a completion
marker (`uer.preprocess.shards`); the directory is removed once the dataset is published. A build
that stops early (an error, Ctrl-C, SIGKILL) keeps its finished shards there, and running it again
with the same inputs writes only the missing ones (and those whose checksum no longer matches).
One build per key runs at a time: a second build of the same inputs waits for the first one's lock
(``$UER_CACHE/shards/<key>.lock``, `uer.preprocess.lock`) and then finds the dataset cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.preprocess.corpus import MAX_LINE_BYTES
from uer.preprocess.integrity import fsync_dir, tree_damage, tree_records
from uer.preprocess.lock import FileLock, pid_alive
from uer.preprocess.processor import Plan, Processor
from uer.preprocess.shards import run_shards, terminating

FORMAT_VERSION = 2
"""Bump when the rows produced for the same inputs change, so old cache entries are not reused."""
META_FILE = "uer_dataset.json"
TOKENIZER_DIR = "tokenizer"
SIBLING = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.(partial|old)$")
"""The name `_sibling` gives a temporary directory: ``.<target>.<pid>-<random>.<kind>``."""

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$UER_CACHE`` or ``~/.cache/uer``."""
    return Path(os.environ.get("UER_CACHE") or "~/.cache/uer").expanduser()


def dataset_key(processor: Processor, plan: Plan, tokenizer) -> str:
    """The content hash (64 hex digits) naming the dataset built from these inputs."""
    payload = {"format_version": FORMAT_VERSION, "options": processor.cache_options(), "source": plan.digest,
               "tokenizer": tokenizer.fingerprint() if tokenizer is not None else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_meta(directory: Path) -> dict | None:
    """The parsed ``uer_dataset.json`` of ``directory``, or None if it has none (or it is unreadable
    or not a JSON object)."""
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def build_dataset(options: Processor, tokenizer=None, output_dir: str | os.PathLike | None = None) -> Path:
    """Run ``options``' processor over its source and write the dataset; return its directory.

    ``tokenizer``: a `uer.data.tokenizer.Tokenizer`; None loads ``options.tokenizer_spec()`` (ignored
    by processors without a tokenizer, e.g. ``image``). ``output_dir``: where to write, instead of
    the cache. When the directory already holds the dataset for the same key it is returned as is
    (logged as "cached") once its files match their checksums; else it is built again (warned).
    A build of the same key running in another process is waited for. SIGTERM stops the build as
    Ctrl-C does, raising `uer.preprocess.shards.Terminated`. Raises UerError on bad input, when the
    source yields no rows, or when ``output_dir`` exists and is not a uer dataset; nothing
    half-written is left behind.
    """
    spec = options.tokenizer_spec()
    if spec is None:
        tokenizer = None
    elif tokenizer is None:
        tokenizer = Tokenizer.load(spec)
    plan = options.plan()
    report_source(plan.stats)
    key = dataset_key(options, plan, tokenizer)
    target = Path(output_dir).expanduser() if output_dir is not None else cache_root() / "datasets" / key
    if _cached(target, key):
        return target
    if target.exists() and not (target.is_dir() and (read_meta(target) is not None or not any(target.iterdir()))):
        if output_dir is not None:
            raise UerError(f"output {target}: exists and is not a uer dataset; not overwriting it")
        log.warning("cached dataset %s is damaged (no readable %s); building it again", target, META_FILE)
    target.parent.mkdir(parents=True, exist_ok=True)
    shards = cache_root() / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    lock = FileLock(shards / f"{key}.lock")
    waited = not lock.acquire()
    try:
        if waited:
            lock.acquire(block=True)
            if _cached(target, key):  # the build we waited for made it
                return target
        with terminating():
            _build(options, plan, tokenizer, key, target, shards / key)
    finally:
        lock.release()
    return target


def _cached(target: Path, key: str) -> bool:
    """Whether ``target`` holds the dataset ``key``, undamaged (logged as "cached"); a damaged one is
    reported with a warning and False."""
    meta = read_meta(target)
    if (meta or {}).get("key") != key:
        return False
    problem = tree_damage(target, _records(meta))
    if problem is not None:
        log.warning("cached dataset %s is damaged (%s); building it again", target, problem)
        return False
    log.info("cached: %s", target)
    return True


def _records(meta: dict) -> dict:
    """The file records of a dataset's metadata ({} for a dataset written before they existed)."""
    files = meta.get("files")
    return files if isinstance(files, dict) else {}


def _build(options: Processor, plan: Plan, tokenizer, key: str, target: Path, work: Path) -> None:
    """Write the dataset ``key`` to ``target`` through a staging sibling, with its shards in ``work``
    (the caller holds the key's lock)."""
    _remove_stale_siblings(target.parent)
    work.mkdir(exist_ok=True)
    staging = _sibling(target, "partial")
    try:
        _write(options, plan, tokenizer, key, staging, work)
        _publish(staging, target, key)
    except UerError:
        shutil.rmtree(work, ignore_errors=True)  # bad input: fixing it changes the key, so nothing to resume
        raise
    except BaseException:  # interrupted or crashed: keep the finished shards for the next run
        done = len(list(work.glob("*.json")))
        if done:
            log.warning("kept %d of %d finished shards in %s; the same command continues from them",
                        done, len(plan.shards), work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


def _remove_stale_siblings(parent: Path) -> None:
    """Remove the temporary directories (`_sibling`) in ``parent`` whose process no longer runs."""
    for path in parent.glob(".*"):
        match = SIBLING.match(path.name)
        if match and path.is_dir() and not pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)


def report_source(stats: dict) -> None:
    """Log the lines of the source that were dropped (not UTF-8) or split (longer than
    ``MAX_LINE_BYTES``), if any."""
    if stats.get("skipped_invalid_lines"):
        log.warning("skipped %d lines that are not valid UTF-8", stats["skipped_invalid_lines"])
    if stats.get("long_lines"):
        log.warning("split %d lines longer than %d bytes into pieces", stats["long_lines"], MAX_LINE_BYTES)


def _write(options: Processor, plan: Plan, tokenizer, key: str, staging: Path, work: Path) -> None:
    # datasets (about 1 s to import) only where a dataset is written or read: the shard workers import
    # this package too (through tokenizer_cache) and never need it
    from datasets import Dataset, concatenate_datasets
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    tokenizer_dir = None
    if tokenizer is not None:
        tokenizer_dir = staging / TOKENIZER_DIR
        tokenizer.save(tokenizer_dir)
    counts = run_shards(options, plan.shards, tokenizer_dir and str(tokenizer_dir), work)
    rows, tokens = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if rows == 0:
        raise UerError(f"corpus {options.corpus or '(default)'}: gives no instances for processor "
                       f"{options.name} with seq_length={options.seq_length}")
    parts = [Dataset.from_file(str(work / f"{i:05d}.arrow")) for i, (n, _) in enumerate(counts) if n]
    shown = is_progress_bar_enabled()
    disable_progress_bar()  # our shard bar already showed the work; saving is a copy
    try:
        concatenate_datasets(parts).save_to_disk(str(staging))
    finally:
        if shown:
            enable_progress_bar()
    meta = {"format_version": FORMAT_VERSION, "key": key, "processor": options.target,
            "options": dataclasses.asdict(options), "tokenizer": options.tokenizer_spec(),
            "tokenizer_fingerprint": tokenizer.fingerprint() if tokenizer is not None else None,
            "num_rows": rows, "num_tokens": tokens, "num_shards": len(plan.shards),
            "label_names": plan.label_names, "source": {"digest": plan.digest, **plan.stats},
            "files": tree_records(staging)}
    with open(staging / META_FILE, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(meta, indent=2, ensure_ascii=False))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(staging)


def _sibling(target: Path, kind: str) -> Path:
    """A new, empty, hidden directory beside ``target`` (usual permissions, unlike mkdtemp's 0700)."""
    path = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"
    path.mkdir()
    return path


def _publish(staging: Path, target: Path, key: str) -> None:
    """Move the finished ``staging`` dir to ``target``, replacing an older dataset there."""
    if target.exists():
        retired = _sibling(target, "old")
        os.replace(target, retired / "dataset")
        os.replace(staging, target)
        fsync_dir(target.parent)
        shutil.rmtree(retired, ignore_errors=True)
        return
    try:
        os.replace(staging, target)
    except OSError:
        if (read_meta(target) or {}).get("key") != key:  # not a concurrent build of the same key
            raise
    fsync_dir(target.parent)


def load_dataset_dir(path: str | os.PathLike, verify: bool = True):
    """Open a directory written by `build_dataset`.

    Returns ``(dataset, meta, tokenizer)``: the ``datasets.Dataset`` (memory-mapped), the metadata of
    ``uer_dataset.json``, and the saved `Tokenizer` (None for processors without one). With
    ``verify``, every file is first checked against the size and checksum recorded for it (pass
    False for a directory `build_dataset` just returned: it checked it). Raises UerError when the
    directory is missing, is not a uer dataset, is damaged or is incomplete.
    """
    from datasets import load_from_disk  # lazy for the shard workers, as in _write

    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise UerError(f"dataset {directory}: not found or not a directory")
    meta = read_meta(directory)
    if meta is None:
        raise UerError(f"dataset {directory}: not a uer dataset (no readable {META_FILE}); "
                       "make one with uer-preprocess")
    problem = tree_damage(directory, _records(meta)) if verify else None
    if problem is not None:
        raise UerError(f"dataset {directory}: damaged, {problem}; make it again with uer-preprocess")
    try:
        dataset = load_from_disk(str(directory))
    except (OSError, ValueError) as err:
        raise UerError(f"dataset {directory}: cannot be loaded ({type(err).__name__})") from None
    if len(dataset) != meta.get("num_rows"):
        raise UerError(f"dataset {directory}: has {len(dataset)} rows, {META_FILE} says {meta.get('num_rows')}")
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():
        tokenizer = Tokenizer.load(str(directory / TOKENIZER_DIR))
    return dataset, meta, tokenizer
