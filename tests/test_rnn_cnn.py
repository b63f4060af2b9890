"""The recurrent and gated-convolutional encoders and the ELMo bidirectional LM target: padding is
invisible to real positions, each direction sees only its side, and the bilm loss scores each
direction against the token it has not seen."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uer.encoders import GatedCnnEncoder, RnnEncoder
from uer.targets import BilmTarget

E, D, S = 6, 10, 7
TOL = {"rtol": 1e-5, "atol": 1e-6}
"""fp32 tolerances for outputs of magnitude ~1 (packing only reorders the batch)."""

ENCODERS = {
    "lstm": lambda: RnnEncoder(input_dim=E, dim=D, num_layers=2, cell="lstm"),
    "gru": lambda: RnnEncoder(input_dim=E, dim=D, num_layers=2, cell="gru"),
    "bilstm": lambda: RnnEncoder(input_dim=E, dim=D, num_layers=2, bidirectional=True),
    "bilstm_packed": lambda: RnnEncoder(input_dim=E, dim=D, num_layers=2, bidirectional=True, pack=True),
    "gru_packed": lambda: RnnEncoder(input_dim=E, dim=D, num_layers=1, cell="gru", pack=True),
    "gatedcnn": lambda: GatedCnnEncoder(input_dim=E, dim=D, num_layers=4, kernel_size=3),
    "gatedcnn_centered": lambda: GatedCnnEncoder(input_dim=E, dim=D, num_layers=3, kernel_size=3, causal=False),
}


def built(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS[name]().eval()


@pytest.mark.parametrize("name", list(ENCODERS))
def test_a_padded_row_equals_the_row_unpadded_and_its_padding_outputs_zero(name):
    encoder = built(name)
    x = torch.randn(3, S, E)
    lengths = [S, 4, 1]
    mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]
    padded = encoder(x.masked_fill(~mask[..., None], 9.0), mask)  # padding holds garbage, not zeros
    for row, n in enumerate(lengths):
        alone = encoder(x[row:row + 1, :n], None)[0]
        torch.testing.assert_close(padded[row, :n], alone, **TOL)
        assert padded[row, n:].abs().sum() == 0


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_direction_sees_only_its_side(name):
    """Changing the input at position j changes a forward (left-to-right) state only at t >= j and
    a backward state only at t <= j; a centered convolution sees a window around t."""
    encoder = built(name)
    x = torch.randn(1, S, E)
    j = 3
    changed = x.clone()
    changed[0, j] += 1.0
    diff = (encoder(changed, None) - encoder(x, None))[0].abs()  # (S, D)
    if name.startswith("bilstm"):
        forward, backward = diff[:, :D // 2].amax(-1), diff[:, D // 2:].amax(-1)
        assert forward[:j].max() == 0 and forward[j:].min() > 0
        assert backward[j + 1:].max() == 0 and backward[:j + 1].min() > 0
    elif name == "gatedcnn_centered":  # kernel 3, centered: position j - 1 sees j from the first layer
        assert diff[:j].amax(-1).min() > 0
    else:
        assert diff[:j].max() == 0 and diff[j:].amax(-1).min() > 0


def test_the_bilm_loss_scores_the_forward_half_on_the_next_token_and_the_backward_half_on_the_previous():
    torch.manual_seed(0)
    target = BilmTarget(dim=D, vocab_size=11)
    hidden = torch.randn(2, S, D)
    labels = torch.randint(0, 11, (2, S))
    labels[1, 5:] = -100
    out = target(hidden, {"labels": labels})
    forward = F.cross_entropy(target.decoder(hidden[:, :-1, :D // 2]).transpose(1, 2), labels[:, 1:], reduction="sum")
    backward = F.cross_entropy(target.decoder(hidden[:, 1:, D // 2:]).transpose(1, 2), labels[:, :-1], reduction="sum")
    n_forward, n_backward = (labels[:, 1:] != -100).sum(), (labels[:, :-1] != -100).sum()
    torch.testing.assert_close(out.metrics["bilm/forward_loss"][0], forward, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.metrics["bilm/backward_loss"][0], backward, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, (forward + backward) / (n_forward + n_backward), rtol=1e-5, atol=1e-6)
    assert target.num_items({"labels": labels}) == n_forward + n_backward == 6 + 4 + 6 + 5


def test_elmo_never_sees_the_token_it_predicts():
    """Through a BiLSTM, the loss of predicting the token at p (the forward state at p - 1 and the
    backward state at p + 1) does not depend on the input at p, and does on every other input."""
    encoder, target = built("bilstm"), BilmTarget(dim=D, vocab_size=11)
    x = torch.randn(1, S, E, requires_grad=True)
    for p in range(S):
        labels = torch.full((1, S), -100)
        labels[0, p] = 4
        (grad,) = torch.autograd.grad(target(encoder(x, None), {"labels": labels}).loss, x)
        seen = grad[0].abs().amax(-1)
        assert seen[p] == 0 and torch.cat([seen[:p], seen[p + 1:]]).min() > 0, f"token {p}: {seen}"


def test_bad_sizes_and_inputs_name_the_problem():
    with pytest.raises(ValueError, match="unknown recurrent cell 'rnn'"):
        RnnEncoder(input_dim=E, dim=D, num_layers=1, cell="rnn")
    with pytest.raises(ValueError, match="dim=9 must be even"):
        RnnEncoder(input_dim=E, dim=9, num_layers=1, bidirectional=True)
    with pytest.raises(ValueError, match="dim=9 must be even"):
        BilmTarget(dim=9, vocab_size=11)
    left_padded = torch.tensor([[False, True, True]])
    with pytest.raises(ValueError, match="right padding"):
        built("lstm")(torch.randn(1, 3, E), left_padded)
    with pytest.raises(ValueError, match="no KV cache"):
        built("gatedcnn")(torch.randn(1, 3, E), None, cache=object())
