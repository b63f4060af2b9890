"""uer's CPU dropout mask and the attention path that uses it, against torch's definitions."""
import pytest
import torch
from torch.nn import functional as F

from uer.layers.attention import attend
from uer.layers.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_has_the_right_rate_in_every_lane(p):
    torch.manual_seed(0)
    keep = keep_mask((1 << 20,), p)
    assert keep.dtype == torch.bool
    # 2^20 Bernoulli draws: the standard error of the rate is below 5e-4
    assert abs(keep.float().mean().item() - (1 - p)) < 3e-3
    for lane in range(4):  # every 16-bit lane of the 64-bit words is uniform, the top one too
        assert abs(keep[lane::4].float().mean().item() - (1 - p)) < 5e-3


def test_keep_mask_elements_are_not_correlated_within_a_word():
    torch.manual_seed(0)
    keep = keep_mask((1 << 20,), 0.5).view(-1, 4).float()
    both = (keep[:, 0] * keep[:, 1]).mean().item()
    assert abs(both - 0.25) < 5e-3


def test_dropout_scales_kept_elements_and_gradients_follow_the_mask():
    torch.manual_seed(0)
    x = (torch.rand(64, 256) + 1).requires_grad_()
    y = dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    assert abs(y.mean().item() - x.mean().item()) < 0.02  # unbiased in expectation


def test_dropout_is_reproducible_from_the_seed_and_off_in_eval():
    x = torch.randn(8, 100)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.3))
    assert dropout(x, 0.3, training=False) is x
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_dropout_keeps_the_dtype():
    x = torch.randn(4, 10, dtype=torch.bfloat16)
    assert dropout(x, 0.1).dtype == torch.bfloat16


def _qkv(t=6, k=6):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 3, t, 8, generator=g), torch.randn(2, 3, k, 8, generator=g),
            torch.randn(2, 3, k, 8, generator=g))


@pytest.mark.parametrize("form", ["none", "causal", "padding", "bias", "causal_past"])
def test_attend_math_path_equals_sdpa(form):
    """With a drop probability below the mask's resolution nothing is dropped, so the CPU math path
    must give SDPA's result for every mask form the model passes."""
    q, k, v = _qkv(t=4 if form == "causal_past" else 6)
    mask, causal = None, False
    if form == "causal":
        causal = True
    elif form == "padding":
        mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
        mask[1, ..., 4:] = False
    elif form == "bias":
        mask = torch.randn(1, 3, 6, 6)
    elif form == "causal_past":  # 4 new queries after 2 cached keys: the mask SDPA gets explicitly
        mask = torch.arange(6)[None, :] <= torch.arange(2, 6)[:, None]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    got = attend(q, k, v, mask, causal, dropout_p=1e-6)
    assert torch.allclose(got, expected, atol=1e-5)


def test_attend_drops_attention_probabilities():
    torch.manual_seed(0)
    q, k, v = _qkv()
    v = torch.ones_like(v)
    out = attend(q, k, v, dropout_p=0.5)
    # with all-ones values each output is the sum of the kept probabilities / 0.5: not all 1
    assert not torch.allclose(out, torch.ones_like(out))
    assert abs(out.mean().item() - 1) < 0.15


@pytest.mark.slow
def test_dropout_and_attention_dropout_trace_without_a_graph_break():
    """Under torch.compile both use torch's dropout: the CPU mask's in-place ``random_`` broke the
    graph at every dropout of a model (trainer.compile=true ran BERT in pieces)."""
    def block(x, q, k, v):
        return dropout(x, 0.1) + attend(q, k, v, dropout_p=0.1).sum()

    explained = torch._dynamo.explain(block)(torch.randn(4, 8), *_qkv())
    assert explained.graph_break_count == 0, explained.break_reasons
