"""CTC (Graves et al. 2006): the target's loss against ``torch.nn.functional.ctc_loss`` per utterance,
its frame counts against the waveform embedding's frame mask, and greedy / prefix beam decoding
against brute-force enumeration of all alignments."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from uer.embeddings.waveform import WaveformFeatureEncoder
from uer.generation.ctc import ctc_beam_decode, ctc_greedy_decode
from uer.targets.ctc import CtcTarget

KERNELS, STRIDES = [10, 3, 2], [5, 2, 2]


def collapse(path, blank=0):
    return tuple(t for i, t in enumerate(path) if t != blank and (i == 0 or t != path[i - 1]))


def best_labelling(log_probs: torch.Tensor) -> list[int]:
    """The most probable labelling of (T, V) log-probabilities, summing every alignment."""
    scores: dict[tuple, float] = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        p = math.exp(sum(log_probs[t, v].item() for t, v in enumerate(path)))
        scores[collapse(path)] = scores.get(collapse(path), 0.0) + p
    return list(max(scores, key=scores.get))


def test_greedy_merges_repeats_drops_blanks_and_stops_at_the_length():
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3], [0, 2, 2, 0, 0, 3, 3, 3]])
    logits = torch.nn.functional.one_hot(ids, 4).float()
    assert ctc_greedy_decode(logits, torch.tensor([8, 5])) == [[1, 1, 2, 3], [2]]


def test_beam_finds_the_labelling_greedy_misses():
    """Two frames with p(blank) = 0.6, p(a) = 0.4: the best path is blank-blank (""), but "a" has
    probability 0.64 summed over its three alignments."""
    logits = torch.log(torch.tensor([[[0.6, 0.4], [0.6, 0.4]]]))
    assert ctc_greedy_decode(logits) == [[]]
    assert ctc_beam_decode(logits, beam_size=4) == [[1]]


def test_wide_beam_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 3, generator=g) * 2
    found = ctc_beam_decode(logits, torch.tensor([5, 5, 4, 3, 5, 2]), beam_size=64)
    for row, n, got in zip(logits, [5, 5, 4, 3, 5, 2], found):
        assert got == best_labelling(torch.log_softmax(row[:n], -1))


def test_decoders_refuse_bad_lengths():
    with pytest.raises(ValueError, match="lengths"):
        ctc_greedy_decode(torch.zeros(2, 5, 3), torch.tensor([6, 1]))
    with pytest.raises(ValueError, match="beam_size"):
        ctc_beam_decode(torch.zeros(2, 5, 3), beam_size=0)


def test_loss_per_utterance_frames_from_the_sample_mask():
    torch.manual_seed(0)
    samples = torch.tensor([800, 610, 400])
    mask = (torch.arange(800)[None] < samples[:, None]).long()
    encoder = WaveformFeatureEncoder([8, 8, 8], KERNELS, STRIDES)
    _, frame_mask = encoder({"input_values": torch.randn(3, 800)}, None, mask.bool())
    labels = torch.tensor([[3, 4, 4, 5], [6, 7, -100, -100], [8, -100, -100, -100]])
    batch = {"attention_mask": mask, "labels": labels}
    target = CtcTarget(dim=8, vocab_size=9, blank_id=0, conv_kernel=KERNELS, conv_stride=STRIDES).eval()
    assert torch.equal(target.frames(batch, 39), frame_mask.sum(1))
    hidden = torch.randn(3, 39, 8)
    out = target(hidden, batch)
    log_probs = torch.log_softmax(out.logits["ctc"], -1)
    expected = [torch.nn.functional.ctc_loss(log_probs[b, :n], labels[b][labels[b] >= 0], (n,), (m,), reduction="sum")
                / m for b, (n, m) in enumerate(zip(frame_mask.sum(1).tolist(), [4, 2, 1]))]
    torch.testing.assert_close(out.terms["ctc"].loss_sum, sum(expected), rtol=1e-5, atol=1e-5)
    assert out.terms["ctc"].num_items == 3
    summed = CtcTarget(dim=8, vocab_size=9, conv_kernel=KERNELS, conv_stride=STRIDES, reduction="sum").eval()
    summed.load_state_dict(target.state_dict())
    torch.testing.assert_close(summed(hidden, batch).terms["ctc"].loss_sum,
                               sum(e * m for e, m in zip(expected, [4, 2, 1])), rtol=1e-5, atol=1e-5)


def test_too_short_utterances_and_bad_labels():
    target = CtcTarget(dim=4, vocab_size=5, conv_kernel=KERNELS, conv_stride=STRIDES, zero_infinity=True).eval()
    hidden = torch.randn(1, 2, 4)
    out = target(hidden, {"labels": torch.tensor([[1, 2, 3]])})  # 3 labels cannot fit 2 frames
    assert out.terms["ctc"].loss_sum.item() == 0
    with pytest.raises(ValueError, match="outside the vocabulary"):
        target(hidden, {"labels": torch.tensor([[5]])})
    with pytest.raises(ValueError, match="reduction"):
        CtcTarget(dim=4, vocab_size=5, conv_kernel=KERNELS, conv_stride=STRIDES, reduction="none")
