"""The hybrid CTC/attention objective (Watanabe et al. 2017): CTC on an encoder-decoder's encoder
output against ``F.ctc_loss`` computed by hand; in s2t_tiny the loss is 0.7 lm + 0.3 ctc, CTC trains
the encoder, and transcription still uses the decoder."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from uer.config import compose_config, resolve
from uer.generation.speech import ctc_part
from uer.models.build import build_model
from uer.targets.encoder_ctc import EncoderCtcTarget

BLANK, EOS, V = 1, 2, 11


def test_loss_is_ctc_of_the_encoder_frames_without_eos():
    g = torch.Generator().manual_seed(0)
    target = EncoderCtcTarget(dim=5, vocab_size=V, blank_id=BLANK, eos_id=EOS)
    memory = torch.randn(2, 7, 5, generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3]).bool()
    labels = torch.tensor([[4, 5, 5, 6, EOS], [7, 8, EOS, -100, -100]])
    batch = {"labels": labels, "encoder_hidden_states": memory, "encoder_attention_mask": mask}
    out = target(torch.randn(2, 5, 5, generator=g), batch)  # the decoder's states: not read
    log_probs = F.log_softmax(target.lm_head(memory), -1).transpose(0, 1)
    expected = F.ctc_loss(log_probs, torch.tensor([4, 5, 5, 6, 7, 8]), torch.tensor([7, 4]), torch.tensor([4, 2]),
                          blank=BLANK, reduction="none") / torch.tensor([4.0, 2.0])
    torch.testing.assert_close(out.terms["ctc"].loss_sum, expected.sum(), rtol=1e-5, atol=1e-5)
    assert out.logits["ctc"].shape == (2, 7, V) and int(out.terms["ctc"].num_items) == 2


def test_refuses_a_batch_without_encoder_states_and_eos_equal_to_blank():
    target = EncoderCtcTarget(dim=5, vocab_size=V, blank_id=BLANK, eos_id=EOS)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        target(torch.randn(1, 3, 5), {"labels": torch.tensor([[4, EOS]])})
    with pytest.raises(ValueError, match="differ from blank_id"):
        EncoderCtcTarget(dim=5, vocab_size=V, blank_id=BLANK, eos_id=BLANK)


def test_s2t_tiny_hybrid_loss_is_the_weighted_sum_and_transcribes_with_the_decoder():
    overrides = ["+model=s2t_tiny", "model/target=seq2seq_lm_ctc", f"model.vocab_size={V}",
                 "model.dropout=0", "model.num_mel_bins=6"]
    cfg = resolve(compose_config(overrides)).model
    torch.manual_seed(0)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(1)
    frames = torch.tensor([[1] * 40, [1] * 29 + [0] * 11])
    ids = torch.randint(4, V, (2, 5), generator=g)
    labels = torch.cat([ids, torch.full((2, 1), EOS)], 1)
    labels[1, 3:] = -100
    labels[1, 3] = EOS
    decoder_input_ids = torch.cat([torch.full((2, 1), EOS), labels[:, :-1].clamp(min=BLANK)], 1)
    batch = {"input_features": torch.randn(2, 40, 6, generator=g), "attention_mask": frames,
             "labels": labels, "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": (labels != -100).long()}
    out = model(batch)
    lm, ctc = (out.terms[n].loss_sum / out.terms[n].num_items for n in ("lm", "ctc"))
    torch.testing.assert_close(out.loss, 0.7 * lm + 0.3 * ctc, rtol=1e-6, atol=1e-6)
    encoder = next(model.encoder.parameters())
    (grad,) = torch.autograd.grad(ctc, encoder)
    assert grad.abs().sum() > 0
    assert not any(p.grad is not None for p in model.decoder.parameters())
    assert ctc_part(model) is None  # uer-transcribe decodes with the decoder, not the CTC head
