"""The summed cross-entropy of the MLM/LM heads against torch's F.cross_entropy."""
import pytest
import torch
from torch.nn import functional as F

from uer.targets.cross_entropy import summed_cross_entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradient_equal_torch_cross_entropy(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(37, 101, generator=g)).to(dtype)
    labels = torch.randint(0, 101, (37,), generator=g)
    ours = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss = summed_cross_entropy(ours, labels)
    expected = F.cross_entropy(ref.float(), labels, reduction="sum")
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, expected, rtol=1e-6)
    (2.5 * loss).backward()
    (2.5 * expected).backward()
    assert ours.grad.dtype == dtype
    assert torch.allclose(ours.grad.float(), ref.grad.float(), atol=1e-6 if dtype == torch.float32 else 1e-2)


def test_repeated_labels_and_retained_graph():
    logits = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([1, 1, 1, 1])
    loss = summed_cross_entropy(logits, labels)
    loss.backward(retain_graph=True)
    first = logits.grad.clone()
    loss.backward()  # the saved log-probabilities were not changed in place by the first backward
    assert torch.allclose(logits.grad, 2 * first)
    assert torch.allclose(first, torch.softmax(logits, -1) - F.one_hot(labels, 5))
