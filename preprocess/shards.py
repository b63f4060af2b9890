"""Run a processor over its shards in worker processes, each shard streamed to its own Arrow file.

Workers are started with ``spawn`` (safe when the parent holds threads, e.g. torch or a tokenizer
that already ran in parallel) and run with ``TOKENIZERS_PARALLELISM=false``, so N workers use N
cores and the Rust tokenizer never forks its thread pool. Each worker writes rows in batches of
``WRITE_BATCH`` to an Arrow IPC stream (the file format ``datasets.Dataset.from_file`` reads), so
memory is bounded by one shard and one batch. Results come back in shard order whatever the number
of processes, and a tqdm bar counts finished shards.

A shard is complete once ``{i:05d}.json`` (its row and token counts) exists beside ``{i:05d}.arrow``:
both are written under temporary names and renamed, the marker last. A build that was interrupted
(an error, Ctrl-C, SIGKILL) and run again with the same work directory skips the complete shards.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from uer.data.tokenizer import Tokenizer
from uer.preprocess.processor import Processor, pack

WRITE_BATCH = 1000
"""Rows per Arrow record batch."""


@functools.lru_cache(maxsize=4)
def _tokenizer(directory: str):
    return Tokenizer.load(directory)


def _init_worker() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


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
        for batch in pack(processor.generate(shard, tokenizer), WRITE_BATCH):
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            rows += len(batch)
            if "input_ids" in schema.names:
                tokens += sum(len(row["input_ids"]) for row in batch)
    os.replace(partial, path)
    marker = Path(path).with_suffix(".json")
    Path(partial).write_text(json.dumps({"rows": rows, "tokens": tokens}))
    os.replace(partial, marker)
    return rows, tokens


def finished(path: str) -> tuple[int, int] | None:
    """(rows, tokens) of the shard written to ``path`` if it is complete, else None."""
    try:
        marker = json.loads(Path(path).with_suffix(".json").read_text())
        return (marker["rows"], marker["tokens"]) if Path(path).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_shards(processor: Processor, shards: list, tokenizer_dir: str | None, work: Path) -> list[tuple[int, int]]:
    """Write every shard ``i`` to ``work/{i:05d}.arrow`` with ``min(num_proc, len(shards))`` processes,
    skipping the shards a previous run completed there.

    Returns (rows, tokens) per shard, in shard order. An error in a worker (e.g. UerError for an
    image that does not decode) cancels the remaining shards and is raised here; the shards that
    completed stay in ``work``.
    """
    paths = [str(work / f"{index:05d}.arrow") for index in range(len(shards))]
    counts = [finished(path) for path in paths]
    todo = [index for index, done in enumerate(counts) if done is None]
    arguments = ([processor] * len(todo), [shards[i] for i in todo], [tokenizer_dir] * len(todo),
                 [paths[i] for i in todo])
    workers = min(processor.num_proc, len(todo))
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker)
    try:
        results = pool.map(write_shard, *arguments) if pool else map(write_shard, *arguments)
        bar = tqdm(results, total=len(shards), initial=len(shards) - len(todo), unit="shard",
                   desc=f"preprocess {processor.name}")
        for index, result in zip(todo, bar):
            counts[index] = result
        return counts
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
