"""uer-convert for wav2vec 2.0 (Baevski et al. 2020): ``Wav2Vec2ForPreTraining`` (group norm after
the first convolution) and ``Wav2Vec2ForCTC`` (layer norm after each) against transformers with
random weights and odd sizes (36 wide, 4 heads of 9, three convolutions of 12/14/18 channels, an even 16-tap position conv in 4 groups, 2 x 7 codewords
of 10 dims projected to 11), on a padded batch of 1600/1210/905 samples with its attention mask:
hidden states, projected and quantized states, the contrastive and diversity losses for the same
mask_time_indices and sampled_negative_indices (eval mode: the quantizer takes the argmax, as
transformers does outside training), CTC logits, loss and every gradient; bit-identical round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import assert_gradients_match, hf_config_dict, load_uer, randomized, same_tensors

from uer.convert import convert
from uer.data.wav2vec2 import sample_negatives, span_mask
from uer.layers.conv_lengths import conv_output_lengths
from uer.train.checkpoint import load_config

CONFIG = {"hidden_size": 36, "num_attention_heads": 4, "intermediate_size": 52, "num_hidden_layers": 2,
          "conv_dim": (12, 14, 18), "conv_kernel": (10, 3, 2), "conv_stride": (5, 2, 2), "num_conv_pos_embeddings": 16,
          "num_conv_pos_embedding_groups": 4, "num_codevector_groups": 2, "num_codevectors_per_group": 7,
          "codevector_dim": 10, "proj_codevector_dim": 11, "vocab_size": 13, "pad_token_id": 0,
          "ctc_loss_reduction": "mean"}
ARCHITECTURES = ("Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC")
SAMPLES = (1600, 1210, 905)


def save_hf(architecture: str, directory):
    """The tiny HF model, the CTC one with a layer norm after every convolution (wav2vec2-large's
    feature encoder; the pretraining one has wav2vec2-base's group norm after the first)."""
    torch.manual_seed(0)
    norm = "layer" if architecture == "Wav2Vec2ForCTC" else "group"
    config = transformers.Wav2Vec2Config(**CONFIG, feat_extract_norm=norm)
    model = randomized(getattr(transformers, architecture)(config)).eval()
    model.save_pretrained(directory)
    return model


def batch() -> dict[str, torch.Tensor]:
    """Zero-padded waveforms, their attention mask, CTC labels, and per-utterance masks and distractors."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor(SAMPLES)
    mask = (torch.arange(SAMPLES[0])[None] < lengths[:, None]).long()
    values = torch.randn(3, SAMPLES[0], generator=g) * mask
    frames = conv_output_lengths(lengths, CONFIG["conv_kernel"], CONFIG["conv_stride"])
    t = int(frames[0])
    rngs = [np.random.default_rng(i) for i in range(3)]
    masked = np.stack([span_mask(rng, int(n), t, 0.065, 10) for rng, n in zip(rngs, frames)])
    negatives = np.stack([sample_negatives(rng, m, 5, i * t) for i, (rng, m) in enumerate(zip(rngs, masked))])
    labels = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, -100, -100], [11, 12, -100, -100, -100]])
    return {"input_values": values, "attention_mask": mask, "labels": labels,
            "mask_time_indices": torch.from_numpy(masked), "sampled_negative_indices": torch.from_numpy(negatives)}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_parity_with_transformers(architecture, tmp_path):
    hf = save_hf(architecture, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch()
    if architecture == "Wav2Vec2ForPreTraining":
        ref = hf(fields["input_values"], attention_mask=fields["attention_mask"],
                 mask_time_indices=fields["mask_time_indices"],
                 sampled_negative_indices=fields["sampled_negative_indices"], output_hidden_states=True)
        out = model(dict(fields))
        with torch.no_grad():
            inputs = dict(fields)
            hidden, real = model.encode(inputs)
            assert_parity(hidden[real], ref.hidden_states[-1][real])
            target = model.target.wav2vec2  # the quantized states from uer's extract_features: those match too
            assert_parity(target.project_hid(hidden), ref.projected_states)
            assert_parity(target.project_q(target.quantizer(inputs["extract_features"])[0]),
                          ref.projected_quantized_states)
        metrics = out.metrics
        assert_parity(metrics["wav2vec2/contrastive"][0], ref.contrastive_loss)
        assert_parity(metrics["wav2vec2/diversity"][0], ref.diversity_loss)
        assert_parity(metrics["wav2vec2/perplexity"][0], ref.codevector_perplexity)
        ours, theirs = out.terms["wav2vec2"].loss_sum, ref.loss
    else:
        del fields["mask_time_indices"], fields["sampled_negative_indices"]  # no masked frames in CTC inference
        ref = hf(fields["input_values"], attention_mask=fields["attention_mask"], labels=fields["labels"])
        out = model(fields)
        hidden, real = model.encode(dict(fields))
        assert_parity(out.logits["ctc"][real], ref.logits[real])
        ours, theirs = out.loss, ref.loss
    assert real.sum(1).tolist() == [79, 60, 44]  # frames of 1600, 1210, 905 samples (kernels 10/3/2, strides 5/2/2)
    assert_parity(ours, theirs)
    ours.backward()
    theirs.backward()
    assert_gradients_match(hf, model, tmp_path / "uer", architecture, tmp_path / "hf_grads")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_round_trips_are_bit_identical(architecture, tmp_path):
    """HF -> uer -> HF gives the same tensors and config.json, uer -> HF -> uer the same checkpoint,
    and the export loads in transformers with nothing missing or unexpected."""
    save_hf(architecture, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    assert load_config(tmp_path / "uer").convert.architecture == architecture
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    _, info = getattr(transformers, architecture).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not any(info.values()), info
    transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "back")
    convert(tmp_path / "back", tmp_path / "again")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "again" / "model.safetensors")
