"""Run a processor over its shards in worker processes, each shard streamed to its own Arrow file.

Workers are started with ``spawn`` (safe when the parent holds threads, e.g. torch or a tokenizer
that already ran in parallel) and run with ``TOKENIZERS_PARALLELISM=false``, so N workers use N
cores and the Rust tokenizer never forks its thread pool. Each worker writes rows in batches of
``WRITE_BATCH`` (``Processor.batches``) to an Arrow IPC stream (the file format ``datasets.Dataset.from_file`` reads), so
memory is bounded by one shard and one batch. Results come back in shard order whatever the number
of processes, and a tqdm bar counts finished shards.

A shard is complete once ``{i:05d}.json`` (its row and token counts, and the size and SHA-256 of the
Arrow file: `uer.preprocess.integrity`) exists beside ``{i:05d}.arrow``: both are written under
temporary names, fsynced and renamed, the marker last. A build that was interrupted (an error,
Ctrl-C, SIGTERM, SIGKILL) and run again with the same work directory checks the complete shards
against their markers, keeps those that match and writes the others again (with a warning).

Workers never outlive the build: on an error, Ctrl-C or SIGTERM (see `terminating`) the parent
terminates them; they ignore SIGINT (Ctrl-C reaches the whole process group, the parent decides) and,
on Linux, get SIGTERM from the kernel if the parent dies without cleaning up (SIGKILL;
``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from uer.data.tokenizer import Tokenizer
from uer.preprocess.integrity import damage, file_record, fsync_dir
from uer.preprocess.processor import Processor

WRITE_BATCH = 1000
"""Rows per Arrow record batch."""
PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal this process gets when its parent dies."""
log = logging.getLogger(__name__)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM inside `terminating`: the build cleans up (workers
    stopped, finished shards kept, temporary directories removed) and, uncaught, the process exits
    with status 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def terminating():
    """Turn SIGTERM into `Terminated` for the ``with`` block (main thread only; elsewhere a no-op)."""
    def handle(signum, frame):
        raise Terminated(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@functools.lru_cache(maxsize=4)
def _tokenizer(directory: str):
    return Tokenizer.load(directory)


def _init_worker(parent: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def write_shard(processor: Processor, shard, tokenizer_dir: str | None, path: str) -> tuple[int, int]:
    """Write the rows of one shard to the Arrow stream file ``path``, then its completion marker.

    The tokenizer is loaded from ``tokenizer_dir`` (a ``Tokenizer.save`` directory; None for
    processors without one), once per process. Returns (rows, tokens), tokens counting the
    ``input_ids`` of every row (0 when there is no such column).
    """
    tokenizer = _tokenizer(tokenizer_dir) if tokenizer_dir else None
    schema = processor.schema
    rows = tokens = 0
    partial = f"{path}.{os.getpid()}.tmp"
    with pa.OSFile(partial, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in processor.batches(shard, tokenizer, WRITE_BATCH):
            writer.write_batch(batch)
            rows += batch.num_rows
            if "input_ids" in schema.names:
                tokens += len(batch.column("input_ids").flatten())
    record = file_record(Path(partial))
    os.replace(partial, path)
    marker = Path(path).with_suffix(".json")
    with open(partial, "w") as handle:
        handle.write(json.dumps({"rows": rows, "tokens": tokens, **record}))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, marker)
    fsync_dir(marker.parent)
    return rows, tokens


def finished(path: str) -> tuple[int, int] | None:
    """(rows, tokens) of the shard written to ``path`` if it is complete and matches its marker's
    size and checksum, else None. A damaged shard is removed, with a warning, to be written again."""
    marker = Path(path).with_suffix(".json")
    try:
        record = json.loads(marker.read_text())
        counts = record["rows"], record["tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    problem = damage(Path(path), record)
    if problem is None:
        return counts
    log.warning("shard %s is damaged (%s); writing it again", path, problem)
    marker.unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)
    return None


def run_shards(processor: Processor, shards: list, tokenizer_dir: str | None, work: Path) -> list[tuple[int, int]]:
    """Write every shard ``i`` to ``work/{i:05d}.arrow`` with ``min(num_proc, len(shards))`` processes,
    skipping the shards a previous run completed there (checked by `finished`).

    Returns (rows, tokens) per shard, in shard order. An error in a worker (e.g. UerError for an
    image that does not decode), Ctrl-C or `Terminated` stops the workers at once and is raised
    here; the shards that completed stay in ``work``. The caller must own ``work`` (no other build
    writing there): leftover temporary files of a killed run are removed.
    """
    for leftover in work.glob("*.tmp"):
        leftover.unlink(missing_ok=True)
    paths = [str(work / f"{index:05d}.arrow") for index in range(len(shards))]
    counts = [finished(path) for path in paths]
    todo = [index for index, done in enumerate(counts) if done is None]
    arguments = ([processor] * len(todo), [shards[i] for i in todo], [tokenizer_dir] * len(todo),
                 [paths[i] for i in todo])
    workers = min(processor.num_proc, len(todo))
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))
    try:
        results = pool.map(write_shard, *arguments) if pool else map(write_shard, *arguments)
        bar = tqdm(results, total=len(shards), initial=len(shards) - len(todo), unit="shard",
                   desc=f"preprocess {processor.name}")
        for result, index in zip(bar, todo):  # the bar first: its last step is counted before zip stops
            counts[index] = result
        return counts
    except BaseException:
        if pool:
            _stop_workers(pool)
        raise
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes now, mid-shard (``shutdown`` alone waits for the
    running shards to finish): ``terminate_workers`` where Python has it (3.14), else through the
    executor's own table of processes (CPython 3.11-3.13)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for process in list((pool._processes or {}).values()):
        process.terminate()
