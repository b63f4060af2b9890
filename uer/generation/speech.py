"""Speech in, text out: transcribe recordings with an S2T checkpoint (an encoder-decoder on filter
banks, Wang et al. 2020: greedy or beam search with a KV cache, :func:`~uer.generation.generate`) or a
CTC checkpoint (wav2vec 2.0 + CTC, Baevski et al. 2020: best path or prefix beam search,
:mod:`uer.generation.ctc`). The inputs are computed as the speech data computes them for training
(:mod:`uer.data.fbank`, :mod:`uer.data.speech`). The library side of ``uer-transcribe``."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from uer.convert import load_pretrained
from uer.data.audio import AUDIO_EXTENSIONS, load_audio, read_manifest
from uer.data.fbank import fbank_features
from uer.data.speech import WaveformCollator, pad_frames
from uer.errors import UerError
from uer.generation.ctc import ctc_transcripts
from uer.generation.generate import generate
from uer.generation.text import decoder_start_id, special_ids
from uer.targets.ctc import CtcTarget


def recordings(sources: Iterable[str | Path]) -> list[str]:
    """The audio files named by ``sources``, in order: each an audio file (a suffix of
    :data:`~uer.data.audio.AUDIO_EXTENSIONS`), or a manifest (a TSV or a folder, see
    :func:`~uer.data.audio.read_manifest`; transcripts are not needed) whose files are taken in its order.

    Raises:
        UerError: a source that does not exist, or a bad manifest.
    """
    out = []
    for source in map(Path, sources):
        if source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS:
            out.append(str(source))
        elif source.exists():
            out.extend(path for path, _ in read_manifest(source, transcripts=False))
        else:
            raise UerError(f"{source}: no such audio file or manifest")
    return out


def ctc_part(model: nn.Module) -> CtcTarget | None:
    """The model's CTC target part, or None (then the model must be an encoder-decoder). An
    encoder-decoder has none: it transcribes with its decoder, also when it trained a CTC head on its
    encoder beside it (hybrid CTC/attention, :mod:`uer.targets.encoder_ctc`)."""
    if getattr(model, "decoder", None) is not None:
        return None
    return next((m for m in model.target.modules() if isinstance(m, CtcTarget)), None)


class Transcriber:
    """A loaded speech checkpoint that turns waveforms into text.

    Args:
        path: a uer checkpoint or a Hugging Face model directory (converted on load,
            :func:`uer.convert.load_pretrained`): ``Speech2TextForConditionalGeneration``, ``Wav2Vec2ForCTC``
            or what the ``s2t_*`` / ``ctc_tiny`` presets train.
        allowed_targets: ``_target_`` prefixes trusted besides ``uer.``.
        device: where the model runs.

    Raises:
        UerError: not a checkpoint, no tokenizer, or a model that is neither an encoder-decoder nor
            has a CTC target; an encoder-decoder whose checkpoint does not say how the decoder starts.
    """

    def __init__(self, path: str | Path, allowed_targets: Iterable[str] = (), device: str | torch.device = "cpu"):
        model, cfg, tokenizer = load_pretrained(path, allowed_targets)
        if tokenizer is None:
            raise UerError(f"{path}: the checkpoint has no tokenizer.json")
        self.ctc = ctc_part(model)
        if self.ctc is None and getattr(model, "decoder", None) is None:
            raise UerError(f"{path}: cannot transcribe with this model: it has neither a decoder (S2T) nor a ctc target")
        self.start = None if self.ctc is not None else decoder_start_id(cfg, tokenizer, Path(path))
        self.waveforms = WaveformCollator(normalize=OmegaConf.select(cfg, "data.normalize", default=True))
        self.model, self.tokenizer, self.device = model.to(device).eval(), tokenizer, device

    def inputs(self, waveforms: list) -> dict[str, torch.Tensor]:
        """The model's input fields for 16 kHz waveforms: normalized waveforms (``input_values``) for
        CTC, else 80-bin filter banks (``input_features``), with ``attention_mask``."""
        if self.ctc is not None:
            values, mask = pad_frames(self.waveforms.normalized(waveforms))
            return {"input_values": values.to(self.device), "attention_mask": mask.to(self.device)}
        features, mask = fbank_features(waveforms)
        return {"input_features": features.to(self.device), "attention_mask": mask.to(self.device)}

    @torch.no_grad()
    def ids(self, waveforms: list, beam: int = 1, max_new_tokens: int = 200) -> list[list[int]]:
        """Token ids of each waveform's transcript (without specials for S2T; up to its eos)."""
        batch = self.inputs(waveforms)
        if self.ctc is not None:
            return ctc_transcripts(self.model, batch, self.ctc.blank_id, beam)
        ids = special_ids(self.tokenizer)
        tokens = generate(self.model, batch, max_new_tokens=max_new_tokens, strategy="beam" if beam > 1 else "greedy",
                          num_beams=beam, eos_token_id=ids["eos"], pad_token_id=ids["pad"],
                          decoder_start_token_id=self.start)
        rows = tokens.tolist()
        return [row[:row.index(ids["eos"])] if ids["eos"] in row else row for row in rows]

    def transcribe(self, paths: list[str], beam: int = 1, batch_size: int = 8, max_new_tokens: int = 200) -> list[str]:
        """One transcript per audio file, in order, on one line each (whitespace collapsed).

        Raises:
            UerError: an unreadable recording, ``beam`` or ``batch_size`` < 1.
        """
        if beam < 1 or batch_size < 1:
            raise UerError(f"beam ({beam}) and batch size ({batch_size}) must be >= 1")
        out = []
        for first in range(0, len(paths), batch_size):
            for row in self.ids([load_audio(p) for p in paths[first:first + batch_size]], beam, max_new_tokens):
                out.append(" ".join(self.tokenizer.decode(row, skip_special_tokens=True).split()))
        return out
