"""Preprocessing at scale: ``uer-preprocess`` on a corpus of ``--size-mb`` (default 1 GB), lines/s and peak RSS.

The corpus is real text, shuffled and repeated: the documents of the ``--source`` files (default:
the corpora in ``../shared/data/corpora`` when that folder exists, plus the King James Bible shipped
with uer; a file with blank lines gives one document per blank-line separated block, any other one
document per line) are written in a new seeded random order on every pass, each followed by a blank
line, until the file holds ``--size-mb`` MB. It lies in a temporary directory (``--workdir``), never
in the repository, and is deleted at the end with every dataset.

For each of ``--processors`` (``bert``, ``mlm``) the script runs the command ``uer-preprocess
data=<processor> data.corpus=<corpus> data.num_proc=<--procs> output=DIR`` (as ``python -m
uer.cli.preprocess``, the data config's tokenizer and seq_length) with a fresh ``UER_CACHE``, and
measures:

- lines/s: non-blank lines of the corpus / wall seconds of the command (interpreter start to the
  finished Arrow dataset: scan and hash, tokenize, build instances, write shards, assemble);
- peak RSS of the process tree: the largest sum over the command and all its descendants (the
  spawn workers), sampled from ``/proc`` every ``--interval`` seconds, of ``RssAnon`` (memory the
  processes own: what grows if the corpus were held in memory) and of ``VmRSS`` (which also counts
  pages of memory-mapped files: the Arrow shards read while the dataset is assembled, page cache
  the kernel can drop); and the largest single process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

Run: ``python benchmarks/preprocess_scale.py`` (1 GB: tens of minutes on 2 cores); quick check:
``python benchmarks/preprocess_scale.py --size-mb 20``.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from process_memory import run_sampled

from uer.preprocess.build import read_meta
from uer.preprocess.corpus import default_corpus

SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpora"


def default_sources() -> list[Path]:
    """The shared corpora (if present) and uer's shipped ``kjv.txt``."""
    shared = sorted(SHARED_CORPORA.glob("*.txt")) if SHARED_CORPORA.is_dir() else []
    return [*shared, default_corpus()]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=1024.0, help="corpus size in MB (10^6 bytes), at least")
    p.add_argument("--source", nargs="+", type=Path, default=default_sources(), help="text files to shuffle and repeat")
    p.add_argument("--processors", nargs="+", choices=["bert", "albert", "mlm", "lm"], default=["bert", "mlm"])
    p.add_argument("--procs", type=int, default=2, help="data.num_proc of the command")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the document order")
    p.add_argument("--workdir", type=Path, help="where the corpus and datasets go (default: the temp dir)")
    args = p.parse_args()
    if args.size_mb <= 0 or args.procs < 1:
        p.error("--size-mb must be > 0 and --procs >= 1")
    for path in args.source:
        if not path.is_file() or path.stat().st_size == 0:
            p.error(f"--source {path}: not a non-empty file")
    return args


def documents(path: Path) -> list[bytes]:
    """The documents of a text file, each as its lines joined by newlines (no trailing newline)."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    blocks = text.split("\n\n") if "\n\n" in text else text.split("\n")
    return [block.strip("\n").encode() for block in blocks if block.strip()]


def build_corpus(sources: list[Path], size: int, path: Path, seed: int) -> tuple[int, int, int]:
    """Write the documents of ``sources``, reshuffled on every pass, each followed by a blank line, to
    ``path`` until it holds at least ``size`` bytes. Returns (bytes, non-blank lines, passes)."""
    docs = [doc for source in sources for doc in documents(source)]
    lines_of = [sum(1 for line in doc.split(b"\n") if line.strip()) for doc in docs]
    rng = random.Random(seed)
    order = list(range(len(docs)))
    written = lines = passes = 0
    with open(path, "wb") as out:
        while written < size:
            rng.shuffle(order)
            passes += 1
            for i in order:
                out.write(docs[i] + b"\n\n")
                written, lines = written + len(docs[i]) + 2, lines + lines_of[i]
                if written >= size:
                    break
    return written, lines, passes


def run(processor: str, corpus: Path, procs: int, workdir: Path, interval: float) -> dict:
    """One ``uer-preprocess`` command; returns wall seconds, peak tree RssAnon and VmRSS (sampled),
    rows, tokens and shards.

    Raises:
        SystemExit: the command failed (its last output line is in the message).
    """
    fresh = Path(tempfile.mkdtemp(prefix=f"uer-{processor}-", dir=workdir))
    env = {**os.environ, "UER_CACHE": str(fresh / "cache"), "HF_DATASETS_CACHE": str(fresh / "hf-datasets")}
    command = [sys.executable, "-m", "uer.cli.preprocess", f"data={processor}", f"data.corpus={corpus}",
               f"data.num_proc={procs}", f"output={fresh / 'dataset'}"]
    run = run_sampled(command, env, interval)
    if run.returncode != 0:
        raise SystemExit(f"uer-preprocess failed: {(run.stderr or run.stdout).strip().splitlines()[-1:]}")
    meta = read_meta(fresh / "dataset")
    shutil.rmtree(fresh)
    return {"seconds": run.seconds, "peak_tree_anon": run.peak_anon, "peak_tree_rss": run.peak_rss, "rows": meta["num_rows"],
            "tokens": meta["num_tokens"], "shards": meta["num_shards"]}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="uer-preprocess-scale-", dir=args.workdir) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        start = time.perf_counter()
        size, lines, passes = build_corpus(args.source, int(args.size_mb * 1e6), corpus, args.seed)
        print(f"corpus: {size / 1e6:.1f} MB, {lines:,} non-blank lines, {passes} shuffled passes over "
              f"{', '.join(s.name for s in args.source)} ({time.perf_counter() - start:.0f} s to write)")
        print(f"command: uer-preprocess data=<processor> data.num_proc={args.procs} (config's tokenizer and "
              f"seq_length); CPU: {os.cpu_count()} logical cores, load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'processor':>9} {'seconds':>8} {'lines/s':>9} {'MB/s':>6} {'peak RssAnon':>13} "
              f"{'peak VmRSS':>11} {'rows':>11} {'tokens':>13} {'shards':>6}")
        for processor in args.processors:
            r = run(processor, corpus, args.procs, Path(tmp), args.interval)
            print(f"{processor:>9} {r['seconds']:8.1f} {lines / r['seconds']:9.0f} {size / 1e6 / r['seconds']:6.2f} "
                  f"{r['peak_tree_anon'] / 2**20:9.0f} MiB {r['peak_tree_rss'] / 2**20:7.0f} MiB "
                  f"{r['rows']:11,} {r['tokens']:13,} {r['shards']:6}",
                  flush=True)
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest single process (getrusage RUSAGE_CHILDREN ru_maxrss, all runs): {largest:.0f} MiB; "
              f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
