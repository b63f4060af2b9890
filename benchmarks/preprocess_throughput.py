"""Preprocessing throughput of ``uer-preprocess`` against a line-by-line Python-tokenizer pipeline.

The corpus is real text repeated to ``--size-mb`` (default 100 MB): whole copies of the sources
(default: the King James Bible shipped with uer, one verse per line, chapters separated by blank
lines), each copy ending in a blank line, written to a temporary file. Both sides read that file,
use the same WordPiece ``vocab.txt`` and run ``--procs`` (2) worker processes:

- uer: the command ``uer-preprocess data=<processor> data.corpus=... data.tokenizer=... output=DIR``
  (run as ``python -m uer.cli.preprocess``) for the ``bert`` and ``mlm`` processors, its wall time
  from interpreter start to the finished Arrow dataset (scan and hash, tokenize, build instances,
  write). It runs in its own process: uer's ``spawn`` workers re-import the parent's main module,
  and this script's imports (torch, transformers) must not be charged to uer. Every run writes to a
  fresh directory with a fresh ``UER_CACHE`` and ``HF_DATASETS_CACHE``, so no run reuses another's work.
- baseline: ``BertTokenizerLegacy``, the pure-Python ``BertTokenizer`` (in transformers 5 the name
  ``BertTokenizer`` denotes the Rust-backed class), ``tokenize`` + ``convert_tokens_to_ids`` line by
  line in a ``multiprocessing.Pool`` over 1 MB line-aligned byte ranges, each worker reading its own
  range. It only tokenizes: no instances, nothing written, so the ratio favours the baseline.

Rates are non-blank lines per second (the same line count for every side). Sides alternate over
``--rounds`` rounds (order flipping) and the median is reported.

Run: ``python benchmarks/preprocess_throughput.py`` (quick check: ``--size-mb 5``). The corpus of
issue 18 (CLUECorpusSmall x20, Chinese vocabulary, uer only): ``--source
../shared/data/corpora/CLUECorpusSmall_bert_sampled.txt --size-mb 39 --vocab
../shared/data/vocab/google_zh_vocab.txt --processors bert --no-baseline``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import environment, interleaved, summary
from uer.preprocess.build import read_meta
from uer.preprocess.corpus import default_corpus

from uer.data.tokenizer import Tokenizer

SHARED_VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vocab" / "google_uncased_en_vocab.txt"
RANGE_BYTES = 1 << 20
_TOKENIZER = None  # the baseline tokenizer of a worker process


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=100.0, help="corpus size in MB (10^6 bytes), at least")
    p.add_argument("--source", nargs="+", type=Path, default=[default_corpus()],
                   help="text files repeated into the corpus (default: uer's shipped kjv.txt)")
    p.add_argument("--vocab", type=Path, help=f"WordPiece vocab.txt for both sides (default: {SHARED_VOCAB} if "
                   "present, else the vocabulary of uer's builtin kjv-wordpiece tokenizer)")
    p.add_argument("--processors", nargs="+", choices=["bert", "mlm"], default=["bert", "mlm"])
    p.add_argument("--procs", type=int, default=2, help="worker processes on each side")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is reported")
    p.add_argument("--workdir", type=Path, help="where the corpus and outputs go (default: a temp dir)")
    p.add_argument("--no-baseline", action="store_true", help="time uer only (e.g. a Chinese corpus, where the "
                   "pure-Python baseline takes minutes)")
    args = p.parse_args()
    if args.size_mb <= 0 or args.procs < 1 or args.rounds < 1:
        p.error("--size-mb must be > 0, --procs and --rounds >= 1")
    files = [("--source", s) for s in args.source] + ([("--vocab", args.vocab)] if args.vocab else [])
    for flag, path in files:
        if not path.is_file() or path.stat().st_size == 0:
            p.error(f"{flag} {path}: not a non-empty file")
    return args


def build_corpus(sources: list[Path], size: int, path: Path) -> tuple[int, int, int]:
    """Write whole copies of ``sources`` (in turn) to ``path`` until it holds ``size`` bytes or more,
    each copy followed by a blank line (a document boundary). Returns (bytes, non-blank lines, copies)."""
    texts = [s.read_bytes().rstrip(b"\r\n") + b"\n\n" for s in sources]
    counts = [sum(1 for line in t.decode("utf-8").split("\n") if line.strip()) for t in texts]
    written = lines = copies = 0
    with open(path, "wb") as out:
        while written < size:
            text = texts[copies % len(texts)]
            out.write(text)
            written, lines, copies = written + len(text), lines + counts[copies % len(texts)], copies + 1
    return written, lines, copies


def vocab_file(args: argparse.Namespace, workdir: Path) -> Path:
    """``--vocab``, else the shared uncased English vocabulary, else uer's builtin WordPiece
    vocabulary written to ``workdir/vocab.txt`` in id order."""
    if args.vocab is not None:
        return args.vocab
    if SHARED_VOCAB.is_file():
        return SHARED_VOCAB
    vocab = Tokenizer.load("builtin:kjv-wordpiece").backend.get_vocab()
    path = workdir / "vocab.txt"
    path.write_text("".join(f"{token}\n" for token in sorted(vocab, key=vocab.get)), encoding="utf-8")
    return path


def run_uer(processor: str, corpus: Path, vocab: Path, procs: int, workdir: Path) -> dict:
    """One ``uer-preprocess`` command (``python -m uer.cli.preprocess``, this interpreter) into a fresh
    directory with fresh caches, deleted afterwards; returns its wall seconds (interpreter start
    included) and its dataset's rows and tokens.

    Raises:
        SystemExit: the command failed (its last output line is in the message).
    """
    fresh = Path(tempfile.mkdtemp(prefix=f"uer-{processor}-", dir=workdir))
    env = {**os.environ, "UER_CACHE": str(fresh / "cache"), "HF_DATASETS_CACHE": str(fresh / "hf-datasets")}
    command = [sys.executable, "-m", "uer.cli.preprocess", f"data={processor}", f"data.corpus={corpus}",
               f"data.tokenizer={vocab}", f"data.num_proc={procs}", f"output={fresh / 'dataset'}"]
    start = time.perf_counter()
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"uer-preprocess failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    meta = read_meta(fresh / "dataset")
    shutil.rmtree(fresh)
    return {"seconds": seconds, "rows": meta["num_rows"], "tokens": meta["num_tokens"]}


def _init_baseline(vocab: str) -> None:
    global _TOKENIZER
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    _TOKENIZER = BertTokenizerLegacy(vocab, do_lower_case=True)


def _tokenize_range(job: tuple[str, int, int]) -> tuple[int, int]:
    """Tokenize the non-blank lines of bytes [start, end) of a file; returns (lines, tokens)."""
    path, start, end = job
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8")
    lines = tokens = 0
    for line in text.split("\n"):
        if line.strip():
            lines += 1
            tokens += len(_TOKENIZER.convert_tokens_to_ids(_TOKENIZER.tokenize(line)))
    return lines, tokens


def line_ranges(path: Path) -> list[tuple[str, int, int]]:
    """``(path, start, end)`` byte ranges of about ``RANGE_BYTES`` that end at line ends."""
    size, ranges, start = path.stat().st_size, [], 0
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + RANGE_BYTES, size))
            end = min(f.tell() + len(f.readline()), size)
            ranges.append((str(path), start, end))
            start = end
    return ranges


def run_baseline(corpus: Path, vocab: Path, procs: int) -> dict:
    """The Python-tokenizer pipeline over ``corpus`` with ``procs`` processes (pool start included)."""
    start = time.perf_counter()
    with multiprocessing.Pool(procs, initializer=_init_baseline, initargs=(str(vocab),)) as pool:
        counts = pool.map(_tokenize_range, line_ranges(corpus), chunksize=1)
    return {"seconds": time.perf_counter() - start, "lines": sum(c[0] for c in counts),
            "tokens": sum(c[1] for c in counts)}


def agreement(corpus: Path, vocab: Path, n: int = 1000) -> int:
    """How many of the first ``n`` non-blank lines get different ids from the two tokenizers."""
    with open(corpus, encoding="utf-8") as f:
        lines = [line.strip() for line, _ in zip((x for x in f if x.strip()), range(n))]
    _init_baseline(str(vocab))
    ours = Tokenizer.load(vocab).encode_batch(lines)
    return sum(a != _TOKENIZER.convert_tokens_to_ids(_TOKENIZER.tokenize(line)) for a, line in zip(ours, lines))


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="uer-preprocess-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        corpus = workdir / "corpus.txt"
        size, lines, copies = build_corpus(args.source, int(args.size_mb * 1e6), corpus)
        vocab = vocab_file(args, workdir)
        print(environment())
        print(f"corpus: {copies} whole-file copies of {' / '.join(s.name for s in args.source)} (in turn) = "
              f"{size / 1e6:.1f} MB, {lines:,} non-blank lines ({corpus})")
        if not args.no_baseline:
            print(f"vocab: {vocab} for both sides; ids differ on {agreement(corpus, vocab)} of the first 1000 lines")
        print(f"uer: the command uer-preprocess data=<processor> data.num_proc={args.procs} (the data config's "
              f"seq_length), a fresh output dir, UER_CACHE and HF_DATASETS_CACHE per run; wall time of the "
              f"command, from interpreter start to the finished Arrow dataset")
        print(f"baseline: transformers BertTokenizerLegacy (pure Python), tokenize + convert_tokens_to_ids "
              f"per line, multiprocessing.Pool({args.procs}) over 1 MB line ranges; tokenizes only\n")
        results: dict[str, list[dict]] = {}

        def timed(name: str, run) -> float:
            results.setdefault(name, []).append(run())
            return lines / results[name][-1]["seconds"]

        runs = {f"uer {p}": (lambda p=p: timed(f"uer {p}", lambda: run_uer(p, corpus, vocab, args.procs, workdir)))
                for p in args.processors}
        if not args.no_baseline:
            runs["baseline"] = lambda: timed("baseline", lambda: run_baseline(corpus, vocab, args.procs))
        rates = interleaved(runs, args.rounds)
        if not args.no_baseline and results["baseline"][-1]["lines"] != lines:
            raise SystemExit(f"the baseline saw {results['baseline'][-1]['lines']:,} lines, the corpus has {lines:,}")
        for name, rate in rates.items():
            last = results[name][-1]
            made = f"{last['lines']:,} lines" if name == "baseline" else f"{last['rows']:,} rows"
            seconds = statistics.median([r["seconds"] for r in results[name]])
            print(f"  {name:<9} {summary(rate)} lines/s, {seconds:6.1f} s, {made}, {last['tokens']:,} tokens")
        if args.no_baseline:
            return
        base = statistics.median(rates["baseline"])
        for p in args.processors:
            print(f"  ratio uer {p} / baseline: {statistics.median(rates[f'uer {p}']) / base:.1f}x")


if __name__ == "__main__":
    main()
