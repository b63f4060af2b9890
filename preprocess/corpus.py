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

Lines are read in pieces of at most ``MAX_LINE_BYTES`` bytes (cut at a space or a UTF-8 character boundary), so
a very long line never has to fit in memory at once: such a line is split, every piece becomes a
sentence of the line's document, and the processors then cut or truncate as their rules say. The
number of split lines is reported as ``long_lines``.
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
MAX_LINE_BYTES = 1024 * 1024
"""Longest piece of a line read at once; longer lines are split into pieces of at most this size."""
SPACE_WINDOW = 4096
"""A long line is cut after a space found within this many bytes of the piece's end, if any."""
SCAN_BLOCK = 8 * 1024 * 1024
"""Bytes `scan_file` decodes and counts at once."""


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


def _char_boundary(piece: bytes) -> int:
    """The largest cut ``<= len(piece)`` that does not fall inside a UTF-8 encoded character."""
    for back in range(1, min(4, len(piece)) + 1):
        byte = piece[-back]
        if byte < 0x80 or byte >= 0xC0:  # ASCII or a lead byte: the character starting here
            width = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(piece) if back >= width else len(piece) - back
    return len(piece)  # not UTF-8 anyway; the decoder will say so


def raw_lines(handle, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(piece, ends_line)`` for the binary file ``handle`` from its current position.

    Every piece holds at most ``limit`` bytes; a line longer than that comes as several pieces, all
    but the last with ``ends_line=False``, cut after the last space in the piece's final
    ``SPACE_WINDOW`` bytes, else at a UTF-8 character boundary. The pieces tile the file.
    """
    carry = b""
    while piece := carry + handle.readline(limit - len(carry)):
        carry = b""
        if piece.endswith(b"\n") or len(piece) < limit:
            yield piece, True
            continue
        cut = piece.rfind(b" ", max(0, len(piece) - SPACE_WINDOW)) + 1 or _char_boundary(piece) or len(piece)
        piece, carry = piece[:cut], piece[cut:]
        yield piece, False


def scan_file(path: Path, invalid_utf8: str, digest) -> dict:
    """Validate one file while feeding its bytes to ``digest`` (a hashlib object).

    Blocks of ``SCAN_BLOCK`` bytes cut at a line end are decoded and counted at once
    (`_block_counts`); a block with a line that is not UTF-8 or may be longer than ``MAX_LINE_BYTES``
    is read again line by line (`_scan_lines`), which finds and reports it.

    Returns ``{"file", "bytes", "lines", "blank_lines", "skipped_invalid_lines", "long_lines"}``
    (``long_lines``: lines longer than ``MAX_LINE_BYTES``, which are split). Raises UerError if the
    file cannot be read or is a directory, is empty or blank, or (``invalid_utf8="fail"``) has a line
    that is not UTF-8, naming the file and the 1-based line number.
    """
    stats = {"bytes": 0, "lines": 0, "blank_lines": 0, "skipped_invalid_lines": 0, "long_lines": 0, "lineno": 0}
    try:
        with open(path, "rb") as handle:
            while block := _whole_lines(handle):
                ends = block.endswith(b"\n") or len(block) < SCAN_BLOCK  # else a line goes on past it
                counts = _block_counts(block) if ends else None
                if counts is None:
                    handle.seek(-len(block), os.SEEK_CUR)
                    _scan_lines(handle, len(block), path, invalid_utf8, digest, stats)
                    continue
                digest.update(block)
                stats["bytes"] += len(block)
                stats["lines"] += counts[0]
                stats["lineno"] += counts[0]
                stats["blank_lines"] += counts[1]
    except OSError as err:
        raise UerError(f"corpus {path}: cannot read ({err.strerror or err})") from None
    del stats["lineno"]
    if stats["bytes"] == 0:
        raise UerError(f"corpus {path}: file is empty")
    if stats["lines"] == stats["blank_lines"]:
        raise UerError(f"corpus {path}: no text (only blank or invalid lines)")
    return {"file": str(path), **stats}


def _whole_lines(handle) -> bytes:
    """The next ``SCAN_BLOCK`` bytes of ``handle`` up to their last line end (the rest is left to
    read), or all of them when they hold no line end or reach the end of the file."""
    block = handle.read(SCAN_BLOCK)
    cut = block.rfind(b"\n") + 1
    if len(block) == SCAN_BLOCK and cut:
        handle.seek(cut - len(block), os.SEEK_CUR)
        block = block[:cut]
    return block


def _block_counts(block: bytes) -> tuple[int, int] | None:
    """(lines, blank lines) of whole lines of UTF-8 text, blank as `_decode` sees it, or None when the
    block is not UTF-8 or has a line that may exceed ``MAX_LINE_BYTES`` (4 bytes a character at most)."""
    try:
        lines = block.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    if lines[-1] == "":
        lines.pop()
    if max(map(len, lines), default=0) * 4 >= MAX_LINE_BYTES:
        return None
    return len(lines), sum(1 for line in lines if not line.lstrip("\ufeff").strip())


def _scan_lines(handle, at_least: int, path: Path, invalid_utf8: str, digest, stats: dict) -> None:
    """Read ``handle`` piece by piece (`raw_lines`) from a line start until ``at_least`` bytes and a
    line end, adding to ``stats`` (``lineno``: lines started so far, for the error message)."""
    read, starts_line = 0, True
    for raw, ends_line in raw_lines(handle):
        digest.update(raw)
        read += len(raw)
        stats["lineno"] += starts_line
        stats["long_lines"] += starts_line and not ends_line
        first, starts_line = starts_line, ends_line
        text = _decode(raw)
        if text is None:
            if invalid_utf8 == "fail":
                raise UerError(f"corpus {path}: invalid UTF-8 at line {stats['lineno']}; "
                               "set data.invalid_utf8=skip to drop such lines")
            stats["skipped_invalid_lines"] += 1
        else:
            stats["lines"] += first
            stats["blank_lines"] += first and not text
        if read >= at_least and ends_line:
            break
    stats["bytes"] += read


def _is_blank(raw: bytes) -> bool:
    return not raw.decode("utf-8", "replace").lstrip("\ufeff").strip()


def _boundary(handle, offset: int, size: int, fmt: str) -> int:
    """The first document boundary at or after ``offset``: the end of the line holding ``offset``;
    for ``documents``, the end of the next blank line after that."""
    handle.seek(offset)
    position = offset
    pieces = raw_lines(handle)
    for raw, ends_line in pieces:
        position += len(raw)
        if ends_line:
            break
    starts_line = blank = True
    for raw, ends_line in pieces if fmt == "documents" else ():
        position += len(raw)
        blank = _is_blank(raw) if starts_line else blank
        if ends_line and blank:
            break
        starts_line = ends_line
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
    ends; a line longer than ``MAX_LINE_BYTES`` gives one entry per piece). Lines that are not UTF-8
    are skipped (``skip``) or raise UerError (``fail``)."""
    document: list[str] = []
    position, starts_line = shard.start, True
    with open(shard.path, "rb") as handle:
        handle.seek(shard.start)
        for raw, ends_line in raw_lines(handle):
            if position >= shard.end:
                break
            text = _decode(raw)
            if text is None and shard.invalid_utf8 == "fail":
                raise UerError(f"corpus {shard.path}: invalid UTF-8 in the line at byte {position}")
            position += len(raw)
            if text:
                document.append(text)
            if document and (ends_line if shard.format == "lines" else text == "" and starts_line):
                yield document
                document = []
            starts_line = ends_line
    if document:
        yield document


def open_corpus(corpus: str | None, corpus_format: str = "auto", invalid_utf8: str = "fail",
                shard_bytes: int | None = None) -> Corpus:
    """Resolve, validate and hash ``corpus``, resolve ``auto`` format, and split it into shards.

    The digest is the sha256 of every file's bytes, streamed (file names do not count); ``shard_bytes``
    defaults to ``SHARD_BYTES``. Stats hold
    per-file counts and the totals ``lines``, ``blank_lines``, ``skipped_invalid_lines``, ``long_lines``,
    ``format``.
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
              for key in ("bytes", "lines", "blank_lines", "skipped_invalid_lines", "long_lines")}
    fmt = corpus_format
    if fmt == "auto":
        fmt = "documents" if totals["blank_lines"] >= DOCUMENTS_MIN_BLANK_RATIO * totals["lines"] else "lines"
    stats = {"format": fmt, **totals, "files": per_file}
    shards = split_shards(files, fmt, invalid_utf8, shard_bytes or SHARD_BYTES)
    return Corpus(files, fmt, digest.hexdigest(), stats, shards)
