"""uer-convert for BEiT (Bao et al. 2022): ``BeitForMaskedImageModeling`` and
``BeitForImageClassification`` against transformers with random weights and odd sizes (36 wide,
3 heads of 12, 20x20 images in a 5x5 grid of 4x4 patches), LayerScale, the relative position bias
shared or per layer, absolute positions, mean or [CLS] pooling, masked patches: hidden states,
logits, pooled output, loss and every gradient; a uer preset's export scored by transformers; round
trips; the refusal of a config without LayerScale."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity, one_line_error
from convert_cases import assert_gradients_match, hf_config_dict, load_uer, randomized, same_tensors, save_random_uer
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file

from uer.convert import convert
from uer.data.fitting import fit_to_data
from uer.data.images import ImageCollator
from uer.targets.mim import MimTarget
from uer.train.checkpoint import load_config

SIZES = {"hidden_size": 36, "num_attention_heads": 3, "intermediate_size": 52, "num_hidden_layers": 2,
         "image_size": 20, "patch_size": 4, "vocab_size": 23, "layer_norm_eps": 1e-6, "layer_scale_init_value": 0.1}
MIM, CLASSIFICATION = "BeitForMaskedImageModeling", "BeitForImageClassification"
CASES = {  # name: (architecture, config) — the position bias shared or per layer, both poolings
    "mim_shared": (MIM, {"use_mask_token": True, "use_shared_relative_position_bias": True, "use_mean_pooling": False}),
    "mim_per_layer": (MIM, {"use_mask_token": True, "use_relative_position_bias": True,
                            "use_absolute_position_embeddings": True, "hidden_act": "gelu_new"}),
    "cls_mean": (CLASSIFICATION, {"use_relative_position_bias": True, "num_labels": 5}),
    "cls_first": (CLASSIFICATION, {"use_shared_relative_position_bias": True, "use_mean_pooling": False,
                                   "num_labels": 5}),
}


def save_hf(case: str, directory):
    architecture, extra = CASES[case]
    torch.manual_seed(0)
    model = randomized(getattr(transformers, architecture)(transformers.BeitConfig(**SIZES, **extra))).eval()
    model.save_pretrained(directory)
    return model


def batch() -> dict[str, torch.Tensor]:
    """Three images, masked patches (some in every image), class labels."""
    g = torch.Generator().manual_seed(1)
    masked = (torch.rand(3, 25, generator=g) < 0.4) | (torch.arange(25) == 7)
    return {"pixel_values": torch.randn(3, 3, 20, 20, generator=g), "bool_masked_pos": masked,
            "labels": torch.tensor([0, 3, 4])}


QUICK = ("cls_mean",)
"""Per-layer bias and mean pooling; the MIM head, the shared bias and [CLS] pooling are quick in the
preset's export test below, the other cases run with the slow tests."""


@pytest.mark.parametrize("case", [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_parity_with_transformers(case, tmp_path):
    architecture = CASES[case][0]
    hf = save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch()
    masked = fields["bool_masked_pos"] if architecture == MIM else None
    if masked is None:
        fields.pop("bool_masked_pos")
    with torch.no_grad():
        hidden, _ = model.encode(fields)
        assert_parity(hidden, hf.beit(fields["pixel_values"], bool_masked_pos=masked).last_hidden_state)
    if masked is not None:  # the visual tokens of uer's codebook, fitted here, are HF's labels
        model.target.mim.fit_to_data(fields)
        tokens = model.target.mim.tokenizer(fields["pixel_values"])[masked]
        ref = hf(pixel_values=fields["pixel_values"], bool_masked_pos=masked, labels=tokens)
        out = model(fields)
        assert_parity(out.logits["mim"], ref.logits[masked])
        ours = out.terms["mim"].loss_sum / out.terms["mim"].num_items
    else:
        ref = hf(pixel_values=fields["pixel_values"], labels=fields["labels"])
        out = model(fields)
        with torch.no_grad():
            pooled = model.target.cls.pool(model.encode(fields)[0], fields)
            assert_parity(pooled, hf.beit(fields["pixel_values"]).pooler_output)
        assert_parity(out.logits["cls"], ref.logits)
        ours = out.terms["cls"].loss_sum / out.terms["cls"].num_items
    assert_parity(ours, ref.loss)
    ours.backward()
    ref.loss.backward()
    assert_gradients_match(hf, model, tmp_path / "uer", architecture, tmp_path / "hf_grads")


def test_preset_export_loads_offline_and_scores_real_pixels_alike(tmp_path):
    """beit_tiny (grayscale, shared bias, final norm) exports as BeitForMaskedImageModeling that
    AutoModel and AutoImageProcessor load; transformers gives its logits for the processor's pixels
    of real images, which equal uer's collator's; the codebook is dropped."""
    model = save_random_uer(tmp_path / "uer", ["+model=beit_tiny", "model.dim=36", "model.num_heads=3",
                                               "model.ffn_dim=52", "model.num_layers=2", "model.image_size=20",
                                               "model.codebook_size=23"])
    convert(tmp_path / "uer", tmp_path / "hf")
    assert "target.mim.tokenizer.codebook" not in load_file(str(tmp_path / "hf" / "model.safetensors"))
    base, info = transformers.AutoModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert isinstance(base, transformers.BeitModel) and not info["missing_keys"], info
    hf = transformers.BeitForMaskedImageModeling.from_pretrained(tmp_path / "hf").eval()
    # transformers 5.24's from_pretrained swaps beit.layernorm and layernorm of this class when both
    # exist (use_mean_pooling=False; with its own saves too): both are set from the file here
    stored = load_file(str(tmp_path / "hf" / "model.safetensors"))
    for name, norm in (("beit.layernorm", hf.beit.layernorm), ("layernorm", hf.layernorm)):
        norm.load_state_dict({k: stored[f"{name}.{k}"] for k in ("weight", "bias")})
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)) for h, w in ((31, 26), (20, 20))]
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    encoded = []
    for image in images:
        image.save(tmp_path / "x.png")
        encoded.append((tmp_path / "x.png").read_bytes())
    ours = ImageCollator(20, 1)({"image": encoded, "label": [0, 0]}, [])["pixel_values"]
    assert_parity(pixels, ours)
    masked = batch()["bool_masked_pos"][:2]
    model.target.mim.fit_to_data({"pixel_values": torch.randn(3, 1, 20, 20)})
    with torch.no_grad():
        assert_parity(model.encode({"pixel_values": pixels})[0], base(pixels).last_hidden_state)
        logits = model({"pixel_values": pixels, "bool_masked_pos": masked}).logits["mim"]
        assert_parity(logits, hf(pixel_values=pixels, bool_masked_pos=masked).logits[masked])


def test_pretraining_fits_the_codebook_an_import_lacks_and_keeps_a_fitted_one():
    """An imported BEiT has no codebook (zeros): a run fits it, also with trainer.init_from; one that
    a uer checkpoint brought is kept."""
    model = torch.nn.ModuleDict({"mim": MimTarget(dim=8, patch_size=4, channels=1, codebook_size=4, num_fit_images=3)})
    pixels = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    asked = []

    def collate(ids, _rngs):
        asked.append(ids)
        return {"pixel_values": pixels[ids]}

    assert not model["mim"].fitted
    fit_to_data(model, np.arange(6), np.arange(6), collate, seed=0)
    assert model["mim"].fitted and len(asked) == 1
    codebook = model["mim"].tokenizer.codebook.clone()
    fit_to_data(model, np.arange(6), np.arange(3), collate, seed=1)
    assert torch.equal(model["mim"].tokenizer.codebook, codebook) and len(asked) == 1


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_round_trips_are_bit_identical(case, tmp_path):
    """HF -> uer -> HF gives the same tensors and config.json, and uer -> HF -> uer the same
    checkpoint; a MIM import records the codebook as initialized (it has no HF counterpart)."""
    architecture = CASES[case][0]
    save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    record = load_config(tmp_path / "uer").convert
    assert record.architecture == architecture
    mim = architecture == MIM
    assert list(record.initialized) == (["target.mim.tokenizer.codebook"] if mim else [])
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    _, info = getattr(transformers, architecture).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not any(info.values()), info
    convert(tmp_path / "back", tmp_path / "again")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "again" / "model.safetensors")
    assert OmegaConf.to_container(load_config(tmp_path / "again").model) == \
        OmegaConf.to_container(load_config(tmp_path / "uer").model)


def test_config_without_layer_scale_is_refused_in_one_line(tmp_path):
    save_hf("cls_mean", tmp_path / "hf")
    raw = json.loads((tmp_path / "hf" / "config.json").read_text())
    raw["layer_scale_init_value"] = 0.0
    (tmp_path / "hf" / "config.json").write_text(json.dumps(raw))
    one_line_error(lambda: convert(tmp_path / "hf", tmp_path / "uer"), "layer_scale_init_value=0.0")
    assert not (tmp_path / "uer").exists()
