"""Summed softmax cross-entropy for large vocabularies, with a backward pass that touches the
(N, V) logits fewer times than autograd's composition."""
from __future__ import annotations

import torch


class _SummedCrossEntropy(torch.autograd.Function):
    """Forward: log_softmax in fp32, keep it, gather the labels' entries. Backward: the gradient
    softmax - onehot is written in one pass over the kept log-probabilities (exp, scale) plus a
    scatter at the labels. Autograd's ``log_softmax`` + ``nll_loss`` instead fills an (N, V) zero
    tensor, scatters into it and reads it back with the log-probabilities (one more write and read
    of N·V values, ~10% of a gpt2_tiny step)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=-1)
        ctx.save_for_backward(logp, labels)
        ctx.logits_dtype, ctx.smoothing = logits.dtype, smoothing
        nll = -logp.gather(1, labels.unsqueeze(1)).sum()
        return nll if not smoothing else (1 - smoothing) * nll - smoothing / logp.shape[1] * logp.sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logp, labels = ctx.saved_tensors
        grad_logits = torch.exp(logp).mul_(grad)
        if ctx.smoothing:  # the target distribution is (1 - s)·onehot + s / V
            grad_logits.sub_(grad * ctx.smoothing / logp.shape[1])
        hit = -grad * (1 - ctx.smoothing)
        grad_logits.scatter_add_(1, labels.unsqueeze(1), hit.expand(len(labels), 1))
        return grad_logits.to(ctx.logits_dtype), None, None


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Σ_i -log softmax(logits_i)[labels_i], computed in fp32 whatever the logits' dtype; equal to
    ``F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=...)`` with the same gradient.

    Args:
        logits: (N, V) float tensor (fp32 or bf16/fp16 under autocast).
        labels: (N,) int64 in [0, V); no ignore index (select the scored positions first).
        label_smoothing: s in [0, 1): the target is (1 - s)·onehot + s/V (Szegedy et al. 2016, as
            PyTorch defines it; fairseq's ``label_smoothed_cross_entropy`` spreads s over V - 1).

    Returns:
        A scalar fp32 tensor.
    """
    return _SummedCrossEntropy.apply(logits, labels, label_smoothing)
