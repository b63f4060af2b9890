"""Language modeling heads: causal LM (Radford et al. 2019), predicting token t+1 from positions ≤ t,
and the seq2seq decoder LM (Vaswani et al. 2017; T5, BART), predicting label t at decoder position t."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.targets.cross_entropy import summed_cross_entropy
from uer.targets.output import TargetOutput, accuracy


class LmTarget(nn.Module):
    """Token prediction over ``labels`` (-100 = ignore, e.g. padding or a prefix LM's source).

    With ``shift`` (causal LM) ``labels`` (B, S) are the input ids themselves and position t is scored
    against ``labels[:, t + 1]``, as in Hugging Face's causal LMs. Without it (seq2seq) ``labels``
    (B, T) are aligned with ``decoder_input_ids``: position t is scored against ``labels[:, t]``, as in
    Hugging Face's ``*ForConditionalGeneration``.

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; ``logits['lm']``: (N, V) for the N scored
    positions in row-major order. ``logits(hidden: (..., D)) -> (..., V)`` for generation.

    Args:
        dim: D.  vocab_size: V.
        bias: bias on the output projection (GPT-2 and T5 have none; BART's ``final_logits_bias``).
        tie_decoder_to: dotted path of a (V, D) model parameter to share (the word embedding), or None.
        label_field: batch key of the labels.
        shift: causal-LM alignment (True) or seq2seq alignment (False).
        scale_input: multiply the hidden state by D^-0.5 before the projection (T5 v1.0, whose head
            is the word embedding; not T5 v1.1).
        label_smoothing: s in [0, 1): cross-entropy against (1 - s)·onehot + s/V (Szegedy et al.
            2016; S2T trains with 0.1, Wang et al. 2020). 0 = plain cross-entropy (Hugging Face's loss).

    Raises:
        ValueError: ``label_smoothing`` outside [0, 1).
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = False, tie_decoder_to: str | None = None,
                 label_field: str = "labels", shift: bool = True, scale_input: bool = False,
                 label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing {label_smoothing} is outside [0, 1)")
        self.label_smoothing = label_smoothing
        self.decoder = nn.Linear(dim, vocab_size, bias=bias)
        self.tied_weights = {"decoder.weight": tie_decoder_to} if tie_decoder_to else {}
        self.label_field = label_field
        self.shift = shift
        self.input_scale = dim ** -0.5 if scale_input else None

    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch[self.label_field]
        return labels[:, 1:] if self.shift else labels

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of scored positions (scalar)."""
        return (self._labels(batch) != -100).sum()

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V)."""
        return self.decoder(hidden if self.input_scale is None else hidden * self.input_scale)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = self._labels(batch)
        selected = labels != -100
        if torch.compiler.is_compiling():  # selecting positions is a data-dependent shape: a graph break
            return self.every_position(hidden, labels, selected)
        h = (hidden[:, :-1] if self.shift else hidden)[selected]
        y = labels[selected]
        logits = self.logits(h)
        loss_sum = summed_cross_entropy(logits, y, self.label_smoothing)
        return TargetOutput.single("lm", loss_sum, selected.sum(), logits, {"acc": accuracy(logits, y)})

    def every_position(self, hidden: torch.Tensor, labels: torch.Tensor, selected: torch.Tensor) -> TargetOutput:
        """:meth:`forward` with static shapes, what runs under ``torch.compile``: the head scores every
        (shifted) position and the ignored ones (``selected`` False) are left out of the loss and
        accuracy sums, so loss, metrics and gradients are :meth:`forward`'s; ``logits['lm']`` is
        (B·S', V) for all positions. Costs the head's FLOPs at ignored positions (none in packed
        pretraining)."""
        logits = self.logits(hidden[:, :-1] if self.shift else hidden).flatten(0, 1)
        y, keep = labels.flatten(), selected.flatten()
        loss_sum = F.cross_entropy(logits.float(), y, ignore_index=-100, reduction="sum",
                                   label_smoothing=self.label_smoothing)
        return TargetOutput.single("lm", loss_sum, keep.sum(), logits, {"acc": accuracy(logits, y.clamp(min=0), keep)})
