"""Text corpora: find the files, validate them, detect their format and split them into shards.

A corpus is one text file, or a glob of several, in UTF-8 (CRLF line ends and a leading BOM are
accepted). Two formats, as in BERT's ``create_pretraining_data.py`` (Devlin et al. 2019):

- ``documents``: one sentence per line, documents separated by a blank line;
- ``lines``: one document per line.

``auto`` picks ``documents`` when blank lines are at least 0.5% of all lines. A document is yielded
as a list of its non-blank lines (``lines`` format: a list of one line).

Shards are byte ranges of one file that start and end at document boundaries, so that each worker
process reads only its own part of the corpus (``iter_documents``) and memory stays bounded by the
shard size, never by the corpus size.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from uer.errors import UerError

FORMATS = ("auto", "lines", "documents")
INVALID_UTF8_POLICIES = ("fail", "skip")
DOCUMENTS_MIN_BLANK_RATIO = 0.005
SHARD_BYTES = 256 * 1024
"""Target shard size in bytes; fixed (not derived from the process count) so output never depends on it."""


@dataclass(frozen=True)
class Shard:
    """Bytes ``[start, end)`` of ``path``, cut at document boundaries; ``index`` is its rank in the corpus."""

    index: int
    path: str
    start: int
    end: int
    format: str
    invalid_utf8: str


@dataclass
class Corpus:
    """A validated corpus: its files, resolved format, content digest, statistics and shards."""

    files: list[Path]
    format: str
    digest: str
    stats: dict
    shards: list[Shard]


def default_corpus() -> Path:
    """The King James Bible shipped in the package ``uer.data.default`` (one verse per line, chapters
    separated by a blank line)."""
    return Path(str(resources.files("uer.data.default").joinpath("kjv.txt")))


def resolve_files(corpus: str | None) -> list[Path]:
    """Expand ``corpus`` (a path, a glob, or None for `default_corpus`) into a sorted list of files.

    Raises UerError when the path does not exist, is a directory, or the glob matches nothing.
    """
    if corpus is None:
        return [default_corpus()]
    pattern = os.path.expanduser(str(corpus))
    if glob.has_magic(pattern):
        paths = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        if not paths:
            raise UerError(f"corpus {corpus}: no file matches this pattern")
    else:
        paths = [Path(pattern)]
    for path in paths:
        if path.is_dir():
            raise UerError(f"corpus {path}: is a directory, expected a text file (or a glob like {path}/*.txt)")
        if not path.exists():
            raise UerError(f"corpus {path}: file not found")
    return paths


def _decode(raw: bytes) -> str | None:
    """One line without its line end, BOM and surrounding spaces; None if it is not valid UTF-8."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff").strip()
    except UnicodeDecodeError:
        return None


def scan_file(path: Path, invalid_utf8: str, digest) -> dict:
    """Validate one file while feeding its bytes to ``digest`` (a hashlib object).

    Returns ``{"file", "bytes", "lines", "blank_lines", "skipped_invalid_lines"}``. Raises UerError if
    the file cannot be read, is empty or blank, or (``invalid_utf8="fail"``) has a line that is not
    UTF-8, naming the file and the 1-based line number.
    """
    lines = blank = skipped = size = 0
    try:
        with open(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                digest.update(raw)
                size += len(raw)
                text = _decode(raw)
                if text is None:
                    if invalid_utf8 == "fail":
                        raise UerError(f"corpus {path}: invalid UTF-8 at line {lineno}; "
                                       "set data.invalid_utf8=skip to drop such lines")
                    skipped += 1
                    continue
                lines += 1
                blank += not text
    except OSError as err:
        raise UerError(f"corpus {path}: cannot read ({err.strerror or err})") from None
    if size == 0:
        raise UerError(f"corpus {path}: file is empty")
    if lines == blank:
        raise UerError(f"corpus {path}: no text (only blank or invalid lines)")
    return {"file": str(path), "bytes": size, "lines": lines, "blank_lines": blank,
            "skipped_invalid_lines": skipped}


def _is_blank(raw: bytes) -> bool:
    return not raw.decode("utf-8", "replace").lstrip("\ufeff").strip()


def _boundary(handle, offset: int, size: int, fmt: str) -> int:
    """The first document boundary at or after ``offset`` (the end of the line holding ``offset``;
    for ``documents``, the end of the next blank line)."""
    handle.seek(offset)
    position = offset + len(handle.readline())
    while fmt == "documents" and position < size:
        raw = handle.readline()
        position += len(raw)
        if _is_blank(raw):
            break
    return min(position, size)


def split_shards(files: list[Path], fmt: str, invalid_utf8: str, shard_bytes: int = SHARD_BYTES) -> list[Shard]:
    """Cut every file into shards of about ``shard_bytes`` bytes at document boundaries.

    ``fmt`` must be resolved (``lines`` or ``documents``). A document never spans two shards.
    """
    shards: list[Shard] = []
    for path in files:
        size = path.stat().st_size
        start = 0
        with open(path, "rb") as handle:
            while start < size:
                end = size if start + shard_bytes >= size else _boundary(handle, start + shard_bytes, size, fmt)
                shards.append(Shard(len(shards), str(path), start, end, fmt, invalid_utf8))
                start = end
    return shards


def iter_documents(shard: Shard) -> Iterator[list[str]]:
    """Yield the documents of one shard, each a non-empty list of lines (stripped of spaces and line
    ends). Lines that are not UTF-8 are skipped (``skip``) or raise UerError (``fail``)."""
    document: list[str] = []
    position = shard.start
    with open(shard.path, "rb") as handle:
        handle.seek(shard.start)
        for raw in handle:
            if position >= shard.end:
                break
            text = _decode(raw)
            if text is None and shard.invalid_utf8 == "fail":
                raise UerError(f"corpus {shard.path}: invalid UTF-8 in the line at byte {position}")
            position += len(raw)
            if text and shard.format == "lines":
                yield [text]
            elif text:
                document.append(text)
            elif text == "" and document:
                yield document
                document = []
    if document:
        yield document


def open_corpus(corpus: str | None, corpus_format: str = "auto", invalid_utf8: str = "fail",
                shard_bytes: int = SHARD_BYTES) -> Corpus:
    """Resolve, validate and hash ``corpus``, resolve ``auto`` format, and split it into shards.

    The digest is the sha256 of every file's bytes, streamed (file names do not count). Stats hold
    per-file counts and the totals ``lines``, ``blank_lines``, ``skipped_invalid_lines``, ``format``.
    Raises UerError for a bad path, an unreadable/empty/invalid file, or an unknown option value.
    """
    if corpus_format not in FORMATS:
        raise UerError(f"data.corpus_format: unknown value {corpus_format!r}; valid: {', '.join(FORMATS)}")
    if invalid_utf8 not in INVALID_UTF8_POLICIES:
        raise UerError(f"data.invalid_utf8: unknown value {invalid_utf8!r}; valid: {', '.join(INVALID_UTF8_POLICIES)}")
    files = resolve_files(corpus)
    digest = hashlib.sha256()
    per_file = []
    for path in files:
        digest.update(f"\0file {len(per_file)}\0".encode())
        per_file.append(scan_file(path, invalid_utf8, digest))
    totals = {key: sum(item[key] for item in per_file)
              for key in ("bytes", "lines", "blank_lines", "skipped_invalid_lines")}
    fmt = corpus_format
    if fmt == "auto":
        fmt = "documents" if totals["blank_lines"] >= DOCUMENTS_MIN_BLANK_RATIO * totals["lines"] else "lines"
    stats = {"format": fmt, **totals, "files": per_file}
    return Corpus(files, fmt, digest.hexdigest(), stats, split_shards(files, fmt, invalid_utf8, shard_bytes))
