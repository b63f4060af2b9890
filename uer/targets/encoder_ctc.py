"""CTC on the encoder of an encoder-decoder, beside the decoder's loss: the hybrid CTC/attention
objective (Watanabe et al. 2017, "Hybrid CTC/Attention Architecture for End-to-End Speech
Recognition", §3; ESPnet's ``mtlalpha``). CTC's monotonic alignment trains the encoder from the
first steps, which the attention decoder alone finds late (or, on a small budget, never)."""
from __future__ import annotations

import torch

from uer.targets.ctc import CtcTarget
from uer.targets.output import TargetOutput

IGNORE_INDEX = -100


class EncoderCtcTarget(CtcTarget):
    """A :class:`~uer.targets.ctc.CtcTarget` that reads the encoder's output instead of ``hidden``.

    ``forward(hidden, batch) -> TargetOutput`` ignores ``hidden`` (the decoder's states) and scores
    ``batch['encoder_hidden_states']`` (B, S', D) (subsampled frames), whose real frames are those of
    ``batch['encoder_attention_mask']`` (B, S') bool (all S' when it is None); :meth:`uer.models.model.
    Model.forward` puts both in the batch of an encoder-decoder. The labels are the decoder's
    ``labels`` (B, L), the transcript then eos, padded with -100: eos is dropped (CTC emits no
    end token). ``logits['ctc']``: (B, S', V). Combine it with the decoder's ``lm`` in
    :class:`~uer.targets.Targets` with weights ``{lm: 1 - λ, ctc: λ}`` (λ = 0.3 in ESPnet's recipes;
    ``conf/model/target/seq2seq_lm_ctc.yaml``).

    Parameters: ``lm_head.*`` (V, D).

    Args:
        dim: D. vocab_size: V, the blank included.
        blank_id: the blank's id (the tokenizer's pad, never a label).
        eos_id: the end-of-sequence id removed from the labels.
        reduction, zero_infinity, dropout: as :class:`~uer.targets.ctc.CtcTarget`.

    Raises:
        ValueError: as :class:`~uer.targets.ctc.CtcTarget`; ``eos_id`` outside [0, V) or equal to
            ``blank_id``; (in forward) a batch without ``encoder_hidden_states`` (not an encoder-decoder).
    """

    def __init__(self, dim: int, vocab_size: int, blank_id: int, eos_id: int, reduction: str = "mean",
                 zero_infinity: bool = True, dropout: float = 0.0):
        super().__init__(dim, vocab_size, conv_kernel=[], conv_stride=[], blank_id=blank_id, reduction=reduction,
                         zero_infinity=zero_infinity, dropout=dropout)
        if not 0 <= eos_id < vocab_size or eos_id == blank_id:
            raise ValueError(f"CTC eos_id {eos_id} must be in [0, {vocab_size}) and differ from blank_id {blank_id}")
        self.eos_id = eos_id

    def frames(self, batch: dict[str, torch.Tensor], length: int) -> torch.Tensor:
        """(B,) int64 real encoder frames of each utterance."""
        mask = batch.get("encoder_attention_mask")
        if mask is None:
            return super().frames({"labels": batch["labels"]}, length)
        return mask.long().sum(-1)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        if "encoder_hidden_states" not in batch:
            raise ValueError("the encoder CTC target needs encoder_hidden_states: use it in an encoder-decoder")
        labels = batch["labels"].masked_fill(batch["labels"] == self.eos_id, IGNORE_INDEX)
        return super().forward(batch["encoder_hidden_states"], {**batch, "labels": labels})
