"""Audio input: decoding recordings to 16 kHz mono waveforms, and reading speech manifests.

Recordings are read with ``soundfile`` (libsndfile: wav, flac, ogg/vorbis and the other formats it
knows), channels are averaged to mono and other sample rates are resampled to 16 kHz with ``soxr``
(the SoX resampler, high quality). 16 kHz is the rate of the speech models built here (S2T, Wang et al.
2020; wav2vec 2.0, Baevski et al. 2020) and of their Hugging Face feature extractors.

A manifest (:func:`read_manifest`) is either

- a TSV of ``path<TAB>transcript`` lines, paths relative to the TSV's folder; a first line naming the
  columns is a header, and then any columns are allowed as long as one names the audio
  (:data:`PATH_COLUMNS`: ``path``, ...) and one the transcript (:data:`TRANSCRIPT_COLUMNS`:
  ``transcript``, ``text``, ``sentence``), e.g. ``id<TAB>path<TAB>duration_s<TAB>voice<TAB>text<TAB>transcript``;
- a folder of audio files, each with its transcript in a ``.txt`` file of the same stem beside it
  (``a.flac`` + ``a.txt``), searched recursively.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from uer.data.text_files import read_lines
from uer.errors import UerError

SAMPLE_RATE = 16000
"""Samples per second of every waveform :func:`load_audio` returns."""
AUDIO_EXTENSIONS = frozenset(f".{ext.lower()}" for ext in soundfile.available_formats()) | {".ogg", ".oga"}
"""File suffixes taken as audio when a manifest is a folder (the formats libsndfile reads)."""
PATH_COLUMNS = ("path", "audio_path", "audio", "file")
"""Header names of the audio path column of a TSV manifest, in order of preference."""
TRANSCRIPT_COLUMNS = ("transcript", "text", "sentence")
"""Header names of the transcript column of a TSV manifest, in order of preference."""


def load_audio(path: str | Path) -> np.ndarray:
    """Decode one recording to a mono float32 waveform at :data:`SAMPLE_RATE` (16 kHz).

    Samples are in [-1, 1] as decoded (no normalization); several channels are averaged; any other
    sample rate is resampled with ``soxr.resample`` (its default high-quality setting).

    Returns:
        ``(samples,)`` float32 array.

    Raises:
        UerError: the file is missing, unreadable, not audio libsndfile decodes, holds no samples
        or holds non-finite samples (one line naming the file).
    """
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.SoundFileError) as err:
        if not Path(path).is_file():
            raise UerError(f"audio {path}: not found") from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UerError(f"audio {path}: cannot be decoded ({reason})") from None
    if samples.size == 0:
        raise UerError(f"audio {path}: holds no samples")
    waveform = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(waveform).all():
        raise UerError(f"audio {path}: holds non-finite samples")
    if rate != SAMPLE_RATE:
        waveform = soxr.resample(waveform, rate, SAMPLE_RATE)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def read_manifest(path: str | Path, transcripts: bool = True) -> list[tuple[str, str]]:
    """The (audio path, transcript) pairs a TSV manifest or a folder lists (see the module docstring).

    Audio paths come back as strings joined to the TSV's (or folder's) location and are checked to
    exist; transcripts are stripped. With ``transcripts=False`` (self-supervised pretraining) a TSV
    line may be a bare path and folder files need no ``.txt``: missing transcripts are ``""``.

    Raises:
        UerError: the manifest is missing, not UTF-8, lists nothing, or a line is malformed (wrong
        number of fields, empty path or transcript, audio file not found); one line naming it.
    """
    source = Path(path).expanduser()
    if source.is_dir():
        return _scan_folder(source, transcripts)
    if source.is_file():
        return _read_tsv(source, transcripts)
    raise UerError(f"manifest {source}: not found (expected a path<TAB>transcript TSV or a folder of audio "
                   "files with .txt transcripts)")


def _columns(header: list[str]) -> tuple[int, int | None] | None:
    """(path column, transcript column) a header line names, or None when the line is no header."""
    names = [name.strip().lower() for name in header]
    path = next((names.index(name) for name in PATH_COLUMNS if name in names), None)
    if path is None:
        return None
    return path, next((names.index(name) for name in TRANSCRIPT_COLUMNS if name in names), None)


def _read_tsv(tsv: Path, transcripts: bool) -> list[tuple[str, str]]:
    lines = read_lines(tsv, "manifest")
    header = lines[0].split("\t") if lines else []
    columns = _columns(header)
    if columns is not None and columns[1] is None and transcripts:
        raise UerError(f"manifest {tsv}: the header names no transcript column ({', '.join(TRANSCRIPT_COLUMNS)})")
    pairs = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or (lineno == 1 and columns is not None):
            continue
        where = f"manifest {tsv}: line {lineno}"
        fields = line.split("\t")
        if columns is not None:
            if len(fields) != len(header):
                raise UerError(f"{where}: has {len(fields)} fields, the header names {len(header)}")
            audio, text = fields[columns[0]], "" if columns[1] is None else fields[columns[1]]
        elif len(fields) == 2 or (len(fields) == 1 and not transcripts):
            audio, text = fields[0], fields[1] if len(fields) == 2 else ""
        else:
            raise UerError(f"{where}: is not path<TAB>transcript")
        pairs.append(_pair(where, audio, text, tsv.parent, transcripts))
    if not pairs:
        raise UerError(f"manifest {tsv}: no recordings listed")
    return pairs


def _pair(where: str, audio: str, text: str, base: Path, transcripts: bool) -> tuple[str, str]:
    """(audio path under ``base``, transcript) after checking both; ``where`` names the line."""
    if not audio.strip():
        raise UerError(f"{where}: has no audio path")
    if transcripts and not text.strip():
        raise UerError(f"{where}: has an empty transcript")
    file = base / audio.strip()
    if not file.is_file():
        raise UerError(f"{where}: audio {file} not found")
    return str(file), text.strip()


def _scan_folder(folder: Path, transcripts: bool) -> list[tuple[str, str]]:
    pairs = []
    for file in sorted(folder.rglob("*")):
        if not (file.is_file() and file.suffix.lower() in AUDIO_EXTENSIONS):
            continue
        text_file = file.with_suffix(".txt")
        if text_file.is_file():
            text = " ".join(read_lines(text_file, "transcript"))
            pairs.append(_pair(f"manifest {folder}: {text_file.name}", str(file), text, folder, transcripts))
        elif not transcripts:
            pairs.append((str(file), ""))
    if not pairs:
        raise UerError(f"manifest {folder}: no audio files with a transcript beside them (<name>.wav + <name>.txt)")
    return pairs
