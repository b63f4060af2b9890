"""S2T's parts against their references: the conv subsampler's frame mask (Hugging Face's
``_get_feature_vector_attention_mask``), fairseq's sinusoid table, the label-smoothed cross-entropy
(``F.cross_entropy(label_smoothing=...)``), and the s2t_small preset's sizes (the published model's)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F
from transformers.models.speech_to_text import modeling_speech_to_text as hf_s2t

from uer.config import compose_config, resolve
from uer.convert.configs import hf_values
from uer.convert.s2t import FAMILY
from uer.embeddings import SpeechEmbedding
from uer.embeddings.sinusoidal import fairseq_sinusoid_table
from uer.targets.cross_entropy import summed_cross_entropy


def test_subsampled_mask_equals_transformers_for_every_length():
    lengths = torch.arange(1, 41)
    frame_mask = (torch.arange(40)[None] < lengths[:, None]).long()
    embedding = SpeechEmbedding(input_dim=3, conv_channels=4, dim=6, kernel_sizes=[5, 5])
    x, mask = embedding({"input_features": torch.randn(40, 40, 3)}, None, frame_mask.bool())
    assert x.shape == (40, 10, 6) and mask.dtype == torch.bool
    hf = hf_s2t.Speech2TextPreTrainedModel  # its two methods need only config.num_conv_layers
    owner = SimpleNamespace(config=SimpleNamespace(num_conv_layers=2))
    owner._get_feat_extract_output_lengths = lambda n: hf._get_feat_extract_output_lengths(owner, n)
    reference = hf._get_feature_vector_attention_mask(owner, 10, frame_mask)
    assert torch.equal(mask, reference.bool())


def test_speech_embedding_refuses_wrong_bins_and_a_preceding_part():
    embedding = SpeechEmbedding(input_dim=3, conv_channels=4, dim=6)
    with pytest.raises(ValueError, match="expects 3"):
        embedding({"input_features": torch.randn(1, 8, 5)})
    with pytest.raises(ValueError, match="first"):
        embedding({"input_features": torch.randn(1, 8, 3)}, torch.zeros(1, 8, 6))
    with pytest.raises(ValueError, match="odd"):
        SpeechEmbedding(input_dim=3, conv_channels=4, dim=6, kernel_sizes=[4])


@pytest.mark.parametrize("dim", [36, 37])
def test_fairseq_table_equals_transformers_speech2text(dim):
    expected = hf_s2t.Speech2TextSinusoidalPositionalEmbedding.get_embedding(50, dim)
    assert torch.equal(fairseq_sinusoid_table(50, dim), expected)


def test_label_smoothed_loss_and_gradient_equal_torch():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(23, 31, generator=g)).requires_grad_()
    ref = logits.detach().clone().requires_grad_()
    labels = torch.randint(0, 31, (23,), generator=g)
    loss = summed_cross_entropy(logits, labels, 0.1)
    expected = F.cross_entropy(ref, labels, reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-5)
    (1.5 * loss).backward()
    (1.5 * expected).backward()
    torch.testing.assert_close(logits.grad, ref.grad, rtol=1e-5, atol=1e-6)


def test_s2t_small_has_the_published_sizes():
    """facebook/s2t-small-librispeech-asr: transformers' Speech2TextConfig defaults are its sizes."""
    cfg = resolve(compose_config(["+model=s2t_small", "model.vocab_size=10000"])).model
    hf = hf_values(FAMILY, cfg)
    published = {"d_model": 256, "encoder_layers": 12, "decoder_layers": 6, "encoder_attention_heads": 4,
                 "decoder_attention_heads": 4, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
                 "activation_function": "relu", "conv_channels": 1024, "conv_kernel_sizes": [5, 5],
                 "input_feat_per_channel": 80, "max_source_positions": 6000, "max_target_positions": 1024,
                 "scale_embedding": True, "pad_token_id": 1, "vocab_size": 10000}
    assert {k: hf[k] for k in published} == published
    assert cfg.encoder.norm_position == "pre" and cfg.target.lm.label_smoothing == 0.1
