"""wav2vec 2.0 parts: the per-utterance span masks and distractors, the frame counts shared by the
embedding and the collator, the quantizer's straight-through choices, the contrastive loss's
treatment of distractors equal to the positive, and padding invariance of the waveform encoder
(transformers parity is in test_convert_wav2vec2.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uer.config import compose_config, resolve
from uer.data.wav2vec2 import Wav2Vec2Collator, sample_negatives, span_mask
from uer.embeddings.waveform import WaveformFeatureEncoder
from uer.errors import UerError
from uer.layers.conv_lengths import conv_output_lengths
from uer.models.build import build_model
from uer.targets.wav2vec2 import GumbelQuantizer, Wav2Vec2Target

KERNELS, STRIDES = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]


def test_span_masks_cover_about_half_of_the_frames_and_stay_in_the_utterance():
    """p = 0.065, M = 10: 1 - (1 - p)^10 ~ 49% of the frames are masked (Baevski et al. 2020, §4.2)."""
    fractions = []
    for seed in range(20):
        mask = span_mask(np.random.default_rng(seed), 400, 500, 0.065, 10)
        assert not mask[400:].any()
        fractions.append(mask[:400].mean())
        again = span_mask(np.random.default_rng(seed), 400, 450, 0.065, 10)  # another batch width: same draw
        assert np.array_equal(again, mask[:450])
    assert 0.42 < np.mean(fractions) < 0.55
    short = span_mask(np.random.default_rng(0), 12, 20, 0.065, 10, min_masks=2)  # only 3 starts fit
    assert short[:10].all() or short[1:11].all() or short[2:12].all()


def test_distractors_are_other_masked_frames_of_the_same_utterance():
    rng = np.random.default_rng(0)
    mask = span_mask(rng, 90, 100, 0.065, 10)
    negatives = sample_negatives(rng, mask, 30, offset=200)
    where = np.flatnonzero(mask)
    assert mask[negatives[where] - 200].all()
    assert (negatives[where] - 200 != where[:, None]).all()
    assert len(np.unique(negatives[where] - 200)) == len(where)  # every masked frame serves as a distractor


def test_frame_counts_are_the_convolutions_output():
    encoder = WaveformFeatureEncoder([4] * 7, KERNELS, STRIDES)
    for n in (400, 401, 719, 720, 16000):
        frames, _ = encoder({"input_values": torch.zeros(1, n)})
        assert frames.shape[1] == conv_output_lengths(n, KERNELS, STRIDES) == conv_output_lengths(
            torch.tensor([n]), KERNELS, STRIDES).item()
    assert conv_output_lengths(399, KERNELS, STRIDES) == 0


def test_quantizer_picks_one_entry_per_group_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    quantizer = GumbelQuantizer(6, groups=2, entries=5, dim=8)
    quantizer.init_weights(0.02)
    x = torch.randn(2, 7, 6)
    out, perplexity = quantizer(x)
    book = quantizer.codevectors.view(2, 5, 4)
    for g in range(2):
        chunk = out[..., 4 * g:4 * (g + 1)].reshape(-1, 1, 4)
        assert ((chunk == book[g][None]).all(-1).sum(-1) == 1).all()
    out.sum().backward()
    assert quantizer.weight_proj.weight.grad.abs().sum() > 0
    assert 1 <= perplexity <= 10
    quantizer.eval()
    chosen = quantizer.weight_proj(x).view(-1, 2, 5).argmax(-1)
    assert torch.equal(quantizer(x)[0].view(-1, 2, 4), book[torch.arange(2), chosen])


def test_a_distractor_equal_to_the_positive_is_ignored():
    torch.manual_seed(0)
    target = Wav2Vec2Target(dim=8, conv_dim=[6], num_groups=1, num_entries=1, codevector_dim=4, proj_dim=4).eval()
    masked = torch.tensor([[True, True, True, False]])
    batch = {"extract_features": torch.randn(1, 4, 6), "mask_time_indices": masked,
             "sampled_negative_indices": torch.tensor([[[1, 2], [0, 2], [0, 1], [0, 0]]])}
    out = target(torch.randn(1, 4, 8), batch)  # one codeword: every distractor equals its positive
    assert torch.isinf(out.logits["wav2vec2"][:, 1:]).all()
    assert out.metrics["wav2vec2/contrastive"][0].item() == pytest.approx(0, abs=1e-6)


def test_real_frames_do_not_depend_on_padding_with_layer_norm_convolutions():
    """With ``conv_norm: layer`` every frame is normalized on its own, so an utterance's real frames
    are the same alone and padded in a batch. (The base layout's group norm after the first
    convolution normalizes over all samples, padding included, as in wav2vec2-base.)"""
    cfg = resolve(compose_config(["+model=wav2vec2_tiny", "model.conv_norm=layer"])).model
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    short, long = torch.randn(1, 6000), torch.randn(1, 9000)
    padded = torch.cat([torch.cat([short, torch.zeros(1, 3000)], 1), long])
    mask = torch.tensor([[1] * 6000 + [0] * 3000, [1] * 9000])
    alone, _ = model.encode({"input_values": short})
    both, frames = model.encode({"input_values": padded, "attention_mask": mask})
    assert frames.sum(1).tolist() == [alone.shape[1], both.shape[1]]
    torch.testing.assert_close(both[0, :alone.shape[1]], alone[0], rtol=1e-4, atol=1e-5)


def test_collator_draws_per_utterance_whatever_the_batch():
    """An utterance's masks and distractors come from its own generator: the same alone and batched
    with a longer one (indices shifted by its row offset); padded frames are never masked."""
    g = np.random.default_rng(0)
    audio = [(g.standard_normal(n) * 3000).astype("<i2").tobytes() for n in (9000, 16000)]
    collate = Wav2Vec2Collator(KERNELS, STRIDES, num_negatives=7)
    both = collate({"audio": audio}, [np.random.default_rng(s) for s in (5, 6)])
    alone = collate({"audio": audio[:1]}, [np.random.default_rng(5)])
    frames = conv_output_lengths(9000, KERNELS, STRIDES)
    t = both["mask_time_indices"].shape[1]
    assert t == conv_output_lengths(16000, KERNELS, STRIDES) and both["sampled_negative_indices"].shape == (2, t, 7)
    assert torch.equal(both["mask_time_indices"][0, :frames], alone["mask_time_indices"][0])
    assert not both["mask_time_indices"][0, frames:].any()
    masked = both["mask_time_indices"][1]
    assert torch.equal(both["sampled_negative_indices"][0, :frames][alone["mask_time_indices"][0]],
                       alone["sampled_negative_indices"][0][alone["mask_time_indices"][0]])
    assert ((both["sampled_negative_indices"][1][masked] - t) >= 0).all()
    with pytest.raises(UerError, match="mask_prob"):
        Wav2Vec2Collator(KERNELS, STRIDES, mask_prob=0.0)

