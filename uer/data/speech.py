"""Batches of speech rows (made by `uer.preprocess.speech`): filter banks with SpecAugment and
decoder targets for S2T (Wang et al. 2020), normalized waveforms with CTC labels for wav2vec 2.0
(Baevski et al. 2020). Field names are Hugging Face's (``Speech2TextForConditionalGeneration``,
``Wav2Vec2ForCTC``), so a converted model takes the same batch.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from uer.data.fbank import NUM_MEL_BINS
from uer.data.padding import pad
from uer.data.seq2seq import IGNORE_INDEX, role_id, shift_tokens_right
from uer.errors import UerError

PCM_SCALE = 2**15
"""Stored waveforms are 16-bit PCM: sample ``s`` is the value ``s / PCM_SCALE``."""
NORM_EPSILON = 1e-7
"""Added to the variance before the square root (``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``)."""


def features_cell(features: np.ndarray) -> bytes:
    """One utterance's filter banks (frames, 80) as an ``input_features`` cell: float32 little-endian."""
    return np.asarray(features, dtype="<f4").tobytes()


def stored_features(data: bytes) -> np.ndarray:
    """The filter banks of one ``input_features`` cell -> (frames, 80) float32."""
    return np.frombuffer(data, dtype="<f4").reshape(-1, NUM_MEL_BINS)


def waveform_cell(waveform: np.ndarray) -> bytes:
    """One 16 kHz waveform (samples,) in [-1, 1] as an ``audio`` cell: 16-bit little-endian PCM,
    rounded and clipped (the precision of the recordings; 2**-16 at most off)."""
    return np.clip(np.rint(waveform * PCM_SCALE), -PCM_SCALE, PCM_SCALE - 1).astype("<i2").tobytes()


def stored_waveform(data: bytes) -> np.ndarray:
    """The 16 kHz waveform of one ``audio`` cell (16-bit PCM) -> (samples,) float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / PCM_SCALE


def zero_mean_unit_var(waveform: np.ndarray) -> np.ndarray:
    """One waveform (samples,) minus its mean, divided by sqrt(variance + 1e-7) -> float32, as
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` (statistics in float64)."""
    centered = waveform - waveform.mean(dtype=np.float64)
    return (centered / np.sqrt(waveform.var(dtype=np.float64) + NORM_EPSILON)).astype(np.float32)


def spec_augment(features: np.ndarray, rng: np.random.Generator, freq_mask: int, freq_masks: int,
                 time_mask: int, time_masks: int, time_mask_ratio: float) -> np.ndarray:
    """SpecAugment's frequency and time masking (Park et al. 2019, without time warping), on a copy.

    Each of ``freq_masks`` masks zeroes channels [f0, f0 + f) with f ~ U{0..freq_mask} and
    f0 ~ U{0..C - f}; each of ``time_masks`` masks zeroes frames [t0, t0 + t) with
    t ~ U{0..min(time_mask, floor(time_mask_ratio · frames))} and t0 ~ U{0..frames - t}. Zero is the
    mean of normalized features (fairseq S2T's mask value). The draws depend on the row alone.

    Args:
        features: (frames, C) float32 of one utterance, unpadded.
        rng: the row's generator.

    Returns:
        (frames, C) float32.
    """
    out = features.copy()
    frames, channels = out.shape
    for _ in range(freq_masks):
        width = int(rng.integers(0, min(freq_mask, channels) + 1))
        start = int(rng.integers(0, channels - width + 1))
        out[:, start:start + width] = 0.0
    longest = min(time_mask, int(time_mask_ratio * frames))
    for _ in range(time_masks):
        width = int(rng.integers(0, longest + 1))
        start = int(rng.integers(0, frames - width + 1))
        out[start:start + width] = 0.0
    return out


def pad_frames(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad B arrays (length_i, ...) with zeros -> ((B, L, ...) float32, attention_mask (B, L)
    int64, 1 = real), L the longest length."""
    lengths = torch.tensor([len(s) for s in sequences])
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(np.require(s, np.float32, "W")) for s in sequences],
                                             batch_first=True)
    return padded, (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()


def ctc_labels(rows: list[list[int]]) -> torch.Tensor:
    """Transcript id lists -> labels (B, L) int64, right-padded with -100 (ignored by the CTC loss)."""
    labels, _ = pad([list(r) for r in rows], IGNORE_INDEX)
    return torch.from_numpy(labels)


class SpeechToTextCollator:
    """The collator of ``data=speech`` (S2T): ``__call__(rows: {"input_features": list[bytes],
    "labels": list[list[int]]}, rngs) -> batch`` with

    - ``input_features`` (B, T, 80) float32 (SpecAugment applied when ``spec_augment``), zero-padded,
      and ``attention_mask`` (B, T) int64, 1 = real frame;
    - ``labels`` (B, L) int64: the transcript then eos, -100 on padding; ``decoder_input_ids`` (B, L)
      = [decoder start] + labels[:-1] (pad for -100) and ``decoder_attention_mask`` (B, L): the
      fields of `uer.data.seq2seq.seq2seq_batch`.

    SpecAugment defaults are the LibriSpeech basic policy (LB) of Park et al. 2019 without time
    warping: one frequency mask of up to ``freq_mask=27`` channels, one time mask of up to
    ``time_mask=100`` frames, at most ``time_mask_ratio=1.0`` of the utterance. :meth:`evaluation`
    gives the same collator with SpecAugment off, for held-out rows.

    Args:
        tokenizer: gives pad, eos and the decoder start (``decoder_start``: pad | eos | bos; eos as
            Hugging Face's S2T configs).

    Raises:
        UerError: a negative mask option, a ratio outside [0, 1], or a missing special token.
    """

    def __init__(self, tokenizer, decoder_start: str = "eos", spec_augment: bool = True, freq_mask: int = 27,
                 freq_masks: int = 1, time_mask: int = 100, time_masks: int = 1, time_mask_ratio: float = 1.0):
        for key, value in (("freq_mask", freq_mask), ("freq_masks", freq_masks), ("time_mask", time_mask),
                           ("time_masks", time_masks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UerError(f"data.{key}={value}: must be an integer >= 0")
        if isinstance(time_mask_ratio, bool) or not isinstance(time_mask_ratio, (int, float)) \
                or not 0 <= time_mask_ratio <= 1:
            raise UerError(f"data.time_mask_ratio={time_mask_ratio}: must be a number in [0, 1]")
        self.pad_id = role_id(tokenizer, "pad", "data.tokenizer (speech)")
        self.eos_id = role_id(tokenizer, "eos", "data.tokenizer (speech)")
        self.decoder_start_id = role_id(tokenizer, decoder_start)
        self.spec_augment = bool(spec_augment)
        self.masks = {"freq_mask": freq_mask, "freq_masks": freq_masks, "time_mask": time_mask,
                      "time_masks": time_masks, "time_mask_ratio": float(time_mask_ratio)}

    def evaluation(self) -> SpeechToTextCollator:
        """A copy with SpecAugment off (held-out loss and decoding see the audio unmasked)."""
        plain = copy.copy(self)
        plain.spec_augment = False
        return plain

    def features(self, cells: list[bytes], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        """``input_features`` and ``attention_mask`` of the stored filter banks."""
        banks = [stored_features(cell) for cell in cells]
        if self.spec_augment:
            banks = [spec_augment(bank, rng, **self.masks) for bank, rng in zip(banks, rngs)]
        features, mask = pad_frames(banks)
        return {"input_features": features, "attention_mask": mask}

    def targets(self, transcripts: list[list[int]]) -> dict[str, torch.Tensor]:
        """``labels``, ``decoder_input_ids`` and ``decoder_attention_mask`` of the transcripts + eos."""
        labels, mask = pad([[*ids, self.eos_id] for ids in transcripts], self.pad_id)
        mask = np.ones_like(labels) if mask is None else mask
        labels[mask == 0] = IGNORE_INDEX
        return {"labels": torch.from_numpy(labels),
                "decoder_input_ids": torch.from_numpy(shift_tokens_right(labels, self.pad_id, self.decoder_start_id)),
                "decoder_attention_mask": torch.from_numpy(mask)}

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        return {**self.features(rows["input_features"], rngs), **self.targets(rows["labels"])}


class WaveformCollator:
    """The collator of ``data=speech_ctc`` (wav2vec 2.0, CTC): ``__call__(rows: {"audio": list[bytes],
    "labels": list[list[int]]}, rngs) -> batch`` with

    - ``input_values`` (B, S) float32: each waveform through :func:`zero_mean_unit_var` when
      ``normalize``, zero-padded; ``attention_mask`` (B, S) int64, 1 = real sample;
    - ``labels`` (B, L) int64, the transcript ids right-padded with -100 (``transcripts``; no eos: CTC
      aligns the transcript alone).

    Subclasses (wav2vec 2.0's span masking) extend :meth:`__call__`; :meth:`waveforms` gives the rows'
    normalized, unpadded waveforms. Draws nothing from ``rngs``.
    """

    def __init__(self, normalize: bool = True, transcripts: bool = True):
        self.normalize, self.transcripts = bool(normalize), bool(transcripts)

    def waveforms(self, cells: list[bytes]) -> list[np.ndarray]:
        """The stored waveforms, each (samples,) float32, normalized when ``normalize``."""
        return self.normalized([stored_waveform(cell) for cell in cells])

    def normalized(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """``waves`` (each (samples,) float32) normalized when ``normalize`` (transcription reads
        recordings through this too)."""
        return [zero_mean_unit_var(w) for w in waves] if self.normalize else waves

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        values, mask = pad_frames(self.waveforms(rows["audio"]))
        batch = {"input_values": values, "attention_mask": mask}
        if self.transcripts:
            batch["labels"] = ctc_labels(rows["labels"])
        return batch
