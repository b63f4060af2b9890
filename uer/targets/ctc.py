"""Connectionist temporal classification (Graves et al. 2006) on an encoder's frames: transcription
without alignments (wav2vec 2.0 fine-tuning, Baevski et al. 2020, §4.3; Hugging Face
``Wav2Vec2ForCTC`` and its ``ForCTCLoss``)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.conv_lengths import conv_output_lengths
from uer.layers.dropout import Dropout
from uer.targets.output import TargetOutput

REDUCTIONS = ("mean", "sum")
"""Per-utterance loss: ``mean`` divides each utterance's negative log-likelihood by its label count
(Hugging Face ``ctc_loss_reduction="mean"``, whose batch mean the trainer's division by utterances
reproduces exactly); ``sum`` keeps it whole (``"sum"``: transformers returns the batch's sum, uer's
loss is that sum over the utterances of the step)."""


class CtcTarget(nn.Module):
    """A linear head D -> V over every frame (after dropout) and the CTC loss of ``labels``.

    ``forward(hidden: (B, T', D), batch) -> TargetOutput``; ``logits['ctc']``: (B, T', V). Reads
    ``labels`` (B, U) int64, padded with -100 (blank ids are ignored too, as in transformers),
    and the frames of each utterance: from ``attention_mask`` (B, N samples) through the feature
    encoder's ``conv_kernel``/``conv_stride`` (:func:`~uer.layers.conv_lengths.conv_output_lengths`),
    all T' frames without one. ``loss_sum``: Σ over utterances (see :data:`REDUCTIONS`), over
    ``num_items`` = B utterances. Log-probabilities are taken in float32 (``ctc_loss`` has no half
    kernel). :meth:`logits` gives the frame logits for decoding (:mod:`uer.generation.ctc`).

    Parameters: ``lm_head.*`` (V, D), Hugging Face's name.

    Args:
        dim: D. vocab_size: V, the blank included.
        conv_kernel, conv_stride: of the waveform feature encoder (lists), for the frame counts.
        blank_id: the blank's id; Hugging Face uses the pad token (``pad_token_id``).
        reduction: one of :data:`REDUCTIONS`.
        zero_infinity: zero the loss (and gradient) of utterances too short for their labels.
        dropout: on the hidden states before the head (``final_dropout``).

    Raises:
        ValueError: unknown ``reduction``, ``blank_id`` outside [0, V); (in forward) a label >= V.
    """

    def __init__(self, dim: int, vocab_size: int, conv_kernel: list[int], conv_stride: list[int], blank_id: int = 0,
                 reduction: str = "mean", zero_infinity: bool = False, dropout: float = 0.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown CTC reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"CTC blank_id {blank_id} is outside the vocabulary [0, {vocab_size})")
        self.dropout = Dropout(dropout)
        self.lm_head = nn.Linear(dim, vocab_size)
        self.blank_id, self.reduction, self.zero_infinity = blank_id, reduction, zero_infinity
        self.kernels, self.strides = list(conv_kernel), list(conv_stride)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T', D) -> (B, T', V)."""
        return self.lm_head(hidden)

    def frames(self, batch: dict[str, torch.Tensor], length: int) -> torch.Tensor:
        """(B,) int64 frames of each utterance; ``length`` = T' when the batch has no ``attention_mask``."""
        mask = batch.get("attention_mask")
        if mask is None:
            return torch.full((batch["labels"].shape[0],), length, dtype=torch.long, device=batch["labels"].device)
        return conv_output_lengths(mask.sum(-1).long(), self.kernels, self.strides)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """B, the utterances (scalar)."""
        return torch.tensor(batch["labels"].shape[0], device=batch["labels"].device)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch["labels"]
        logits = self.logits(self.dropout(hidden))
        if labels.numel() and int(labels.max()) >= logits.shape[-1]:
            raise ValueError(f"CTC label {int(labels.max())} is outside the vocabulary of {logits.shape[-1]}")
        real = (labels != -100) & (labels != self.blank_id)
        label_lengths = real.sum(-1)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T', B, V)
        losses = F.ctc_loss(log_probs, labels[real], self.frames(batch, hidden.shape[1]), label_lengths,
                            blank=self.blank_id, reduction="none", zero_infinity=self.zero_infinity)
        if self.reduction == "mean":
            losses = losses / label_lengths.clamp(min=1)
        return TargetOutput.single("ctc", losses.sum(), self.num_items(batch), logits)
