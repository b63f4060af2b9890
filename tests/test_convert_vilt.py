"""uer-convert for ViLT (Kim et al. 2021): ``ViltForMaskedLM`` and ``ViltForImageAndTextRetrieval``
against transformers with random weights and odd sizes (36 wide, 4 heads of 9, 12x12 images in 9
patches, padded captions): hidden states, logits, loss and every gradient; bit-identical round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import assert_gradients_match, hf_config_dict, hf_tokenizer, load_uer, same_tensors
from PIL import Image
from torch.nn import functional as F

from uer.convert import convert
from uer.data.images import square_pixels
from uer.train.checkpoint import load_config

CONFIG = dict(hidden_size=36, num_attention_heads=4, intermediate_size=52, vocab_size=99, num_hidden_layers=3,
              max_position_embeddings=40, image_size=12, patch_size=4, hidden_act="gelu_new", layer_norm_eps=1e-6)
ARCHITECTURES = ("ViltForMaskedLM", "ViltForImageAndTextRetrieval")


def save_hf(architecture: str, directory):
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(transformers.ViltConfig(**CONFIG))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval().save_pretrained(directory)
    hf_tokenizer("bert").save_pretrained(directory)
    return model


def batch() -> dict[str, torch.Tensor]:
    """Captions of lengths 10, 7, 4 (right-padded), segments, images, MLM and ITM labels."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([10, 7, 4])
    mask = (torch.arange(10)[None] < lengths[:, None]).long()
    ids = torch.randint(5, 99, (3, 10), generator=g).masked_fill(mask == 0, 0)
    chosen = (torch.rand(3, 10, generator=g) < 0.3) | (torch.arange(10) == 1)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": (torch.arange(10)[None] >= 3).long() * mask,
            "pixel_values": torch.randn(3, 3, 12, 12, generator=g),
            "labels": ids.masked_fill(~chosen | (mask == 0), -100), "itm_labels": torch.tensor([1, 0, 1])}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_parity_with_transformers(architecture, tmp_path):
    hf = save_hf(architecture, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch()
    inputs = {k: fields[k] for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")}
    ref = hf(**inputs, **({"labels": fields["labels"]} if architecture == "ViltForMaskedLM" else {}))
    out = model(fields)
    with torch.no_grad():  # text positions (HF visits the patches in a random order) and the pooler
        hidden, _ = model.encode(fields)
        base = hf.vilt(**inputs)
        real = fields["attention_mask"].bool()
        assert_parity(hidden[:, :10][real], base.last_hidden_state[:, :10][real])
        assert_parity(torch.tanh(model.target.itm.pooler(hidden[:, 0])), base.pooler_output)
    if architecture == "ViltForMaskedLM":
        assert_parity(out.logits["mlm"], ref.logits[fields["labels"] != -100])
        ours, theirs = out.terms["mlm"].loss_sum / out.terms["mlm"].num_items, ref.loss
    else:  # HF computes no loss here: ITM's binary cross-entropy on its rank_output logit
        assert_parity(out.logits["itm"], ref.logits.squeeze(-1))
        ours, theirs = out.loss, F.binary_cross_entropy_with_logits(ref.logits.squeeze(-1),
                                                                   fields["itm_labels"].float())
    assert_parity(ours, theirs)
    ours.backward()
    theirs.backward()
    assert_gradients_match(hf, model, tmp_path / "uer", architecture, tmp_path / "hf_grads")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_round_trips_are_bit_identical(architecture, tmp_path):
    """HF -> uer -> HF gives the same tensors and config.json, and uer -> HF -> uer the same
    checkpoint; ViltForMaskedLM has no ITM classifier: import records it as initialized."""
    save_hf(architecture, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    record = load_config(tmp_path / "uer").convert
    assert record.architecture == architecture
    fresh = ["target.itm.classifier.bias", "target.itm.classifier.weight"] if architecture == "ViltForMaskedLM" else []
    assert sorted(record.initialized) == fresh
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    model, info = getattr(transformers, architecture).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not any(info.values()), info
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "back")  # data=vilt's pixels
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8))
    assert np.array_equal(processor(images=image, text="w5", return_tensors="np")["pixel_values"][0],
                          square_pixels(image, 12))
    convert(tmp_path / "back", tmp_path / "again")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "again" / "model.safetensors")
