"""Masked language modeling head and loss (Devlin et al. 2019), computed only at masked positions."""
from __future__ import annotations

import torch
from torch import nn

from uer.layers.feedforward import get_activation
from uer.layers.norms import make_norm
from uer.targets.cross_entropy import summed_cross_entropy
from uer.targets.output import TargetOutput, accuracy


class MlmTarget(nn.Module):
    """Predicts ``labels`` (B, S') at the positions where they are not -100; S' <= S: the labels
    cover the first S' positions (a single-stream model's text, before its image patches; ViLT).

    Head: dense D -> head_dim, activation, norm, decoder head_dim -> V (+ bias). ALBERT's factorized
    head uses head_dim = embedding width. The decoder weight may be tied to the word embedding
    (``tie_decoder_to: embedding.word.weight``; :class:`uer.models.model.Model` does the tying).

    ``forward(hidden: (B, S, D), batch) -> TargetOutput``; ``logits['mlm']``: (N, V) for the N
    masked positions in row-major order.

    The head gathers its N rows with ``batch[positions_field]`` (N,) int64, the flat row-major indices
    of the predicted entries of the (B, S') labels, when the collator gives them
    (:class:`uer.data.masking.MlmCollator` does); otherwise it finds them from the labels. The two
    give the same rows in the same order, but only the given positions have a shape torch.compile
    can trace (as an input size) without breaking the graph at a data-dependent ``nonzero``.

    Args:
        dim: D.  head_dim: width of the transform (default D).  vocab_size: V.
        activation, norm, norm_eps: transform options.
        tie_decoder_to: dotted path of a (V, head_dim) parameter of the model to share, or None.
        label_field: batch key of the labels.  positions_field: batch key of the flat masked positions.
    """

    def __init__(self, dim: int, vocab_size: int, head_dim: int | None = None, activation: str = "gelu",
                 norm: str = "layernorm", norm_eps: float = 1e-12, tie_decoder_to: str | None = None,
                 label_field: str = "labels", positions_field: str = "masked_positions"):
        super().__init__()
        head_dim = head_dim or dim
        self.dense = nn.Linear(dim, head_dim)
        self.act = get_activation(activation)
        self.norm = make_norm(norm, head_dim, norm_eps)
        self.decoder = nn.Linear(head_dim, vocab_size)
        self.tied_weights = {"decoder.weight": tie_decoder_to} if tie_decoder_to else {}
        self.label_field, self.positions_field = label_field, positions_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of masked positions in the batch (scalar)."""
        return (batch[self.label_field] != -100).sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        positions = batch.get(self.positions_field)
        if positions is None:
            positions = torch.nonzero(labels.flatten() != -100).squeeze(1)
        # (N, D); labels may cover a prefix (text before image patches): a view when they cover all S
        h = hidden[:, :labels.shape[1]].flatten(0, 1).index_select(0, positions)
        y = labels.flatten().index_select(0, positions)
        logits = self.decoder(self.norm(self.act(self.dense(h))))
        loss_sum = summed_cross_entropy(logits, y)
        count = torch.full((), positions.shape[0], device=labels.device)
        return TargetOutput.single("mlm", loss_sum, count, logits, {"acc": accuracy(logits, y)})
