"""Transcribed (or untranscribed) recordings for speech models: S2T (Wang et al. 2020) from filter
banks (processor ``FbankProcessor``, ``data=speech``), wav2vec 2.0 and CTC (Baevski et al. 2020)
from waveforms (processor ``WaveformProcessor``, ``data=speech_ctc``).

The source (``data.corpus``, required) is a manifest :func:`uer.data.audio.read_manifest` reads: a
``path<TAB>transcript`` TSV (paths relative to it; a header naming ``path`` and ``transcript`` or
``text`` columns allows other columns, as the shared speech corpus has) or a folder of audio files
with a ``.txt`` transcript beside each. Every recording is decoded to 16 kHz mono
(:func:`uer.data.audio.load_audio`: wav/flac/ogg, any rate); one that fails to decode, or is shorter
than one 25 ms analysis frame, fails the run naming the file. ``transcripts=false`` (self-supervised
pretraining) accepts manifests without transcripts and stores empty labels.

Transcripts are tokenized without special tokens by ``tokenizer``: ``chars`` (the default for null),
``sentencepiece`` (unigram, as S2T's recipes), ``bpe`` or ``wordpiece`` train one on the manifest's
transcripts (`Tokenizer.train`, deterministic, cased; ``vocab_size`` entries but for chars; stored in
the cache by `uer.preprocess.tokenizer_cache`, then saved with the dataset and every checkpoint as
``tokenizer/tokenizer.json``); any other value is a `Tokenizer.load` spec (a SentencePiece
``.model``, a checkpoint's ``tokenizer/`` directory, ...). A transcript longer than ``seq_length - 1``
tokens (room for the end token a decoder predicts) fails the run naming the file: cutting a
transcript would teach the model words the audio does not hold.

Row columns: ``input_features`` (``FbankProcessor``: :func:`uer.data.fbank.fbank_features`, normalized,
as :func:`uer.data.speech.features_cell` bytes) or ``audio`` (``WaveformProcessor``: 16-bit PCM at
16 kHz, :func:`uer.data.speech.waveform_cell`), and ``labels`` (int32 transcript ids).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
from uer.preprocess.processor import TOKEN_IDS, Plan, Processor
from uer.preprocess.tokenizer_cache import prepared_tokenizer

from uer.data.audio import SAMPLE_RATE, load_audio, read_manifest
from uer.data.fbank import FRAME_LENGTH, fbank_features
from uer.data.speech import features_cell, waveform_cell
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError

RECORDINGS_PER_SHARD = 64
TRAINED_TOKENIZERS = ("chars", "sentencepiece", "bpe", "wordpiece")
"""``data.tokenizer`` values that train a tokenizer on the manifest's transcripts."""


@dataclass
class SpeechProcessor(Processor):
    """Options and plan shared by the speech processors (module docstring); a subclass defines the
    audio column through :meth:`audio_columns`. ``seq_length`` caps transcript tokens plus the end
    token; ``vocab_size`` sizes a trained sentencepiece/bpe/wordpiece tokenizer."""

    vocab_size: int = 1000
    transcripts: bool = True

    default_tokenizer: ClassVar[str | None] = "chars"
    uncached_keys: ClassVar[tuple[str, ...]] = (
        *Processor.uncached_keys, "vocab_size", "corpus_format", "invalid_utf8")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 10:
            raise UerError(f"data.vocab_size: must be an integer >= 10, got {self.vocab_size!r}")
        if not isinstance(self.transcripts, bool):
            raise UerError(f"data.transcripts: must be true or false, got {self.transcripts!r}")
        self._pairs, self._spec = None, None

    def pairs(self) -> list[tuple[str, str]]:
        """The manifest's (audio path, transcript) pairs, read once. Raises UerError: no corpus, or
        a bad manifest (see `read_manifest`)."""
        if self._pairs is None:
            if self.corpus is None:
                raise UerError(f"data.corpus: processor {self.name} needs a manifest: a path<TAB>transcript TSV "
                               "or a folder of audio files with .txt transcripts (e.g. data.corpus=train.tsv)")
            self._pairs = read_manifest(self.corpus, self.transcripts)
        return self._pairs

    def tokenizer_spec(self) -> str | None:
        """A cached directory for a tokenizer trained on the transcripts (``chars``/``sentencepiece``/
        ``bpe``/``wordpiece``, null = ``chars``), the configured spec otherwise; None (no tokenizer) for a
        trained kind when ``transcripts`` is false."""
        spec = self.tokenizer or self.default_tokenizer
        if spec not in TRAINED_TOKENIZERS:
            return spec
        if not self.transcripts:
            return None
        if self._spec is None:
            texts = [text for _, text in self.pairs()]
            digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
            recipe = {"trained_on": digest, "kind": spec, "lowercase": False,
                      "vocab_size": None if spec == "chars" else self.vocab_size}
            self._spec = prepared_tokenizer(recipe, lambda: _train(texts, spec, self.vocab_size))
        return self._spec

    def plan(self) -> Plan:
        pairs = self.pairs()
        digest = hashlib.sha256()
        for path, text in pairs:
            digest.update(f"\0{text}\0".encode())
            try:
                digest.update(Path(path).read_bytes())
            except OSError as err:
                raise UerError(f"audio {path}: cannot read ({err.strerror or err})") from None
        shards = [pairs[i:i + RECORDINGS_PER_SHARD] for i in range(0, len(pairs), RECORDINGS_PER_SHARD)]
        return Plan(digest.hexdigest(), {"recordings": len(pairs)}, shards)

    def generate(self, shard: list[tuple[str, str]], tokenizer) -> Iterator[dict]:
        with _one_thread():
            rows = list(self._rows(shard, tokenizer))
        return iter(rows)

    def _rows(self, shard: list[tuple[str, str]], tokenizer) -> Iterator[dict]:
        texts = [text for _, text in shard]
        ids = tokenizer.encode_batch(texts) if tokenizer is not None and self.transcripts else [[] for _ in shard]
        for (path, _), labels in zip(shard, ids):
            if len(labels) > self.seq_length - 1:
                raise UerError(f"audio {path}: its transcript has {len(labels)} tokens, more than data.seq_length="
                               f"{self.seq_length} leaves (seq_length - 1, room for the end token)")
            waveform = load_audio(path)
            if len(waveform) < FRAME_LENGTH:
                raise UerError(f"audio {path}: {len(waveform) / SAMPLE_RATE * 1000:.1f} ms is shorter than one "
                               f"{FRAME_LENGTH * 1000 // SAMPLE_RATE} ms analysis frame")
            yield {**self.audio_columns(waveform), "labels": labels}

    def audio_columns(self, waveform: np.ndarray) -> dict:
        """The audio column(s) of one row from its 16 kHz waveform (samples,) float32."""
        raise NotImplementedError


@dataclass
class FbankProcessor(SpeechProcessor):
    """Processor of ``data=speech`` (S2T): normalized 80-bin filter banks and transcript ids."""

    schema: ClassVar[pa.Schema] = pa.schema([("input_features", pa.binary()), ("labels", TOKEN_IDS)])

    def audio_columns(self, waveform: np.ndarray) -> dict:
        return {"input_features": features_cell(fbank_features([waveform])[0][0].numpy())}


@dataclass
class WaveformProcessor(SpeechProcessor):
    """Processor of ``data=speech_ctc`` (wav2vec 2.0, CTC): 16-bit PCM waveforms and transcript ids."""

    schema: ClassVar[pa.Schema] = pa.schema([("audio", pa.binary()), ("labels", TOKEN_IDS)])

    def audio_columns(self, waveform: np.ndarray) -> dict:
        return {"audio": waveform_cell(waveform)}


@contextlib.contextmanager
def _one_thread():
    """torch on one thread while a shard is processed: the parallelism is the worker processes
    (``data.num_proc``), and an utterance's small tensor operations spread over threads that spin on
    a busy machine (15x slower on one shared by other jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(texts: list[str], kind: str, vocab_size: int) -> Tokenizer:
    """A cased ``kind`` tokenizer (one of `TRAINED_TOKENIZERS`) trained on the transcripts ``texts``."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "transcripts.txt"
        path.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
        return Tokenizer.train([path], kind=kind, vocab_size=vocab_size, lowercase=False)
