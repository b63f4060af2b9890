"""The bidirectional language model objective of ELMo (Peters et al. 2018, §3.1): a forward LM
predicts token t + 1 from the left-to-right states at t, a backward LM predicts token t - 1 from
the right-to-left states at t, and the two share one softmax layer (UER-py's ``bilm`` target)."""
from __future__ import annotations

import torch
from torch import nn

from uer.targets.cross_entropy import summed_cross_entropy
from uer.targets.output import TargetOutput, accuracy


class BilmTarget(nn.Module):
    """Forward and backward LM losses over the two halves of a bidirectional encoder's output.

    ``hidden`` (B, S, D) holds the forward states in ``[..., :D/2]`` and the backward states in
    ``[..., D/2:]``, the layout of :class:`uer.encoders.RnnEncoder` with ``bidirectional: true``:
    the forward state at t has seen tokens <= t and is scored against ``labels[:, t + 1]``; the
    backward state at t has seen tokens >= t and is scored against ``labels[:, t - 1]``, so neither
    direction sees the token it predicts. ``labels`` (B, S) are the input ids with -100 at padding
    (the causal LM collator's, ``data=lm``).

    One loss term ``bilm``: the summed cross-entropy of both directions over the number of scored
    positions of both, i.e. the mean of the two directions' mean losses when they score equally
    many tokens (ELMo maximizes the sum of both log likelihoods; the mean only halves the scale).
    Metrics ``acc`` (both directions), ``forward_loss`` and ``backward_loss`` (each direction's own
    mean). ``logits['bilm']``: (N_forward + N_backward, V), forward positions first, row-major.

    Args:
        dim: D, the width of both directions together (each direction's states are D/2 wide).
        vocab_size: V.
        bias: bias on the shared output projection.
        tie_decoder_to: dotted path of a (V, D/2) model parameter to share (the word embedding when
            its width is D/2), or None.
        label_field: batch key of the labels.

    Raises:
        ValueError: an odd ``dim``.
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = True, tie_decoder_to: str | None = None,
                 label_field: str = "labels"):
        super().__init__()
        if dim % 2:
            raise ValueError(f"a bidirectional LM reads two halves of the hidden state: dim={dim} must be even")
        self.half = dim // 2
        self.decoder = nn.Linear(self.half, vocab_size, bias=bias)
        self.tied_weights = {"decoder.weight": tie_decoder_to} if tie_decoder_to else {}
        self.label_field = label_field

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Number of scored positions of both directions (scalar)."""
        labels = batch[self.label_field]
        return (labels[:, 1:] != -100).sum() + (labels[:, :-1] != -100).sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        labels = batch[self.label_field]
        forward_states, backward_states = hidden[..., :self.half], hidden[..., self.half:]
        scored = [_scored(forward_states[:, :-1], labels[:, 1:]), _scored(backward_states[:, 1:], labels[:, :-1])]
        logits = self.decoder(torch.cat([h for h, _ in scored]))
        y = torch.cat([y for _, y in scored])
        n_forward = len(scored[0][1])
        losses = [summed_cross_entropy(logits[:n_forward], y[:n_forward]),
                  summed_cross_entropy(logits[n_forward:], y[n_forward:])]
        counts = [torch.tensor(n_forward, device=y.device), torch.tensor(len(y) - n_forward, device=y.device)]
        metrics = {"acc": accuracy(logits, y), "forward_loss": (losses[0].detach(), counts[0]),
                   "backward_loss": (losses[1].detach(), counts[1])}
        return TargetOutput.single("bilm", losses[0] + losses[1], counts[0] + counts[1], logits, metrics)


def _scored(states: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The states (N, D/2) and labels (N,) of the positions whose label is not -100;
    states (B, S', D/2) and labels (B, S') are already aligned."""
    selected = labels != -100
    return states[selected], labels[selected]
