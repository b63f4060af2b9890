"""uer-convert for CLIP (``CLIPModel``): parity with transformers at odd sizes (logits, loss,
features and every gradient) for both of transformers' text poolings and both activations,
bit-identical round trips in both directions, and an export that ``AutoModel`` and
``AutoProcessor`` load offline and that scores real pixels and captions as uer does."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity, one_line_error
from convert_cases import hf_config_dict, load_uer, same_tensors
from omegaconf import OmegaConf
from PIL import Image
from runs import FAST
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.convert import convert, engine, load_pretrained
from uer.convert.families import FAMILIES
from uer.data.image_text import clip_pixels
from uer.data.tokenizer import Tokenizer
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint
from uer.train.run import prepare

TEXT = {"hidden_size": 36, "num_attention_heads": 3, "intermediate_size": 52, "vocab_size": 99,
        "max_position_embeddings": 17, "num_hidden_layers": 2, "pad_token_id": 0, "bos_token_id": 1}
VISION = {"hidden_size": 30, "num_attention_heads": 5, "intermediate_size": 44, "image_size": 30, "patch_size": 6,
          "num_hidden_layers": 3}
EOS = {"eos": 5, "argmax": 2}
"""text_config.eos_token_id of each of transformers' text poolings (2 = the legacy argmax rule)."""


def save_hf_clip(directory, pooling: str = "eos", act: str = "quick_gelu", seed: int = 0):
    """A CLIPModel with odd sizes and every parameter randomized (logit scale too), saved."""
    config = transformers.CLIPConfig(text_config={**TEXT, "eos_token_id": EOS[pooling], "hidden_act": act},
                                     vision_config={**VISION, "hidden_act": act}, projection_dim=20)
    torch.manual_seed(seed)
    model = transformers.CLIPModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.logit_scale.fill_(2.9)
    model.save_pretrained(directory)
    return model.eval()


def clip_batch(pooling: str) -> dict[str, torch.Tensor]:
    """Right-padded captions (lengths 9, 6, 3) [bos, words, end] and images. ``eos``: the end id
    (5) is not the largest and also pads, so only the first-eos rule finds it; ``argmax``: the end
    token (98) is the largest id, as in CLIP's BPE."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 6, 3])
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    end, words = (5, (6, 99)) if pooling == "eos" else (98, (3, 98))
    ids = torch.randint(*words, (3, 9), generator=g)
    ids[:, 0] = 1
    ids[torch.arange(3), lengths - 1] = end
    ids = ids.masked_fill(mask == 0, end if pooling == "eos" else 0)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": torch.randn(3, 3, 30, 30, generator=g)}


def mapped_grads(model, model_cfg, hf_names) -> dict[str, torch.Tensor]:
    """``model``'s gradients under the HF names, through the export mapping."""
    family = FAMILIES["clip"]
    grads = copy.deepcopy(model)
    for (name, p), g in zip(grads.named_parameters(), model.parameters(), strict=True):
        assert g.grad is not None, f"{name} got no gradient"
        p.data = g.grad.clone()
    tensors, _ = engine.to_hf(family, family.head("CLIPModel"), grads, engine.num_layers(model_cfg))
    assert tensors.keys() == hf_names
    return tensors


@pytest.mark.parametrize(("pooling", "act"), [("eos", "quick_gelu"),
                                               pytest.param("argmax", "gelu", marks=pytest.mark.slow)])
def test_parity_with_transformers(pooling, act, tmp_path):
    hf = save_hf_clip(tmp_path / "hf", pooling, act)
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    clr = load_config(tmp_path / "uer").model.target.clr
    assert (clr.text_pooling, clr.eos_token_id) == ((pooling, 5) if pooling == "eos" else (pooling, None))
    batch = clip_batch(pooling)
    ref = hf(**batch, return_loss=True)
    out = model(batch)
    assert_parity(out.logits["clr"], ref.logits_per_image)
    assert_parity(out.logits["clr"].T, ref.logits_per_text)
    assert_parity(out.loss, ref.loss)
    with torch.no_grad():
        hidden, _ = model.encode(batch)
        assert_parity(model.target.clr.text_features(hidden.first, batch["input_ids"]), ref.text_embeds)
        assert_parity(model.target.clr.image_features(hidden.second), ref.image_embeds)
    ref.loss.backward()
    out.loss.backward()
    theirs = {n: p.grad for n, p in hf.named_parameters()}
    ours = mapped_grads(model, resolve(load_config(tmp_path / "uer").model), theirs.keys())
    for name, grad in theirs.items():
        assert_parity(ours[name], grad, msg=name)


@pytest.mark.slow
def test_hf_uer_hf_is_bit_identical_and_loads_cleanly(tmp_path):
    save_hf_clip(tmp_path / "hf", "argmax")
    convert(tmp_path / "hf", tmp_path / "uer")
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(model).__name__ == "CLIPModel" and not any(info.values()), info
    assert load_pretrained(tmp_path / "hf").config.convert.architecture == "CLIPModel"  # trainer.init_from


SIZES = ["model.vocab_size=null", "model.max_seq_length=17", "model.projection_dim=20", "model.text.dim=36",
         "model.text.num_heads=3", "model.text.ffn_dim=52", "model.text.num_layers=2", "model.vision.dim=30",
         "model.vision.num_heads=5", "model.vision.ffn_dim=44", "model.vision.num_layers=3",
         "model.vision.image_size=30", "model.vision.patch_size=6"]


def save_uer_clip(directory, tokenizer, extra: tuple = (), sizes: tuple = tuple(SIZES)):
    """A clip_tiny checkpoint (at odd ``sizes``) with random weights and the given tokenizer."""
    cfg = compose_config(["+model=clip_tiny", *sizes, *extra])
    cfg.model.vocab_size = tokenizer.vocab_size if tokenizer is not None else 99
    cfg = resolve(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(directory, model, cfg, tokenizer, None)
    return model.eval()


def test_uer_hf_uer_is_bit_identical_and_transformers_scores_real_inputs_alike(tmp_path):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    model = save_uer_clip(tmp_path / "uer", tokenizer)
    convert(tmp_path / "uer", tmp_path / "hf")
    config = hf_config_dict(tmp_path / "hf")
    assert config["uer_text_pooling"] == "last"
    assert config["text_config"]["eos_token_id"] == tokenizer.sep_token_id
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    original, back = load_config(tmp_path / "uer"), load_config(tmp_path / "back")
    assert OmegaConf.to_container(back.model) == OmegaConf.to_container(original.model)

    hf, info = transformers.AutoModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "hf")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 52), (37, 30))]
    captions = ["in the beginning god created the heaven", "and the earth"]
    inputs = processor(text=captions, images=images, return_tensors="pt", padding=True)
    ids = [[tokenizer.cls_token_id, *row, tokenizer.sep_token_id] for row in tokenizer.encode_batch(captions)]
    assert [row[:len(i)] for row, i in zip(inputs["input_ids"].tolist(), ids)] == ids
    pixels = torch.from_numpy(np.stack([clip_pixels(image, 30) for image in images]))
    assert_parity(inputs["pixel_values"], pixels)
    with torch.no_grad():
        ours = model(dict(inputs)).logits["clr"]
        assert_parity(hf(**inputs).logits_per_image, ours)


@pytest.mark.slow
def test_export_refusals_are_one_line(tmp_path):
    save_uer_clip(tmp_path / "uer", None)
    one_line_error(lambda: convert(tmp_path / "uer", tmp_path / "hf"), "text_pooling=last", "tokenizer")
    save_uer_clip(tmp_path / "drop", None, ("model.target.clr.text_pooling=argmax", "model.dropout=0.1"))
    one_line_error(lambda: convert(tmp_path / "drop", tmp_path / "hf2"), "CLIPModel", "model.dropout: 0.1 vs 0.0")
    assert not (tmp_path / "hf").exists() and not (tmp_path / "hf2").exists()
    save_hf_clip(tmp_path / "mixed")
    raw = json.loads((tmp_path / "mixed" / "config.json").read_text())
    raw["vision_config"]["hidden_act"] = "gelu"
    (tmp_path / "mixed" / "config.json").write_text(json.dumps(raw))
    one_line_error(lambda: convert(tmp_path / "mixed", tmp_path / "u"), "vision_config.hidden_act='gelu'")


@pytest.mark.slow
def test_pretraining_starts_from_an_exported_hugging_face_directory(tmp_path):
    save_uer_clip(tmp_path / "uer", Tokenizer.load("builtin:kjv-wordpiece"), sizes=())
    convert(tmp_path / "uer", tmp_path / "hf")
    trainer = prepare(compose_config(["+model=clip_tiny", f"trainer.init_from={tmp_path / 'hf'}", *FAST,
                                      "trainer.max_steps=2", "trainer.log_every=1", "data.batch_size=8",
                                      f"trainer.output_dir={tmp_path / 'run'}"]))
    source = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert torch.equal(trainer.model.target.clr.text_projection.weight.detach().cpu(), source["text_projection.weight"])
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["clr/loss"] for r in rows if r.get("split") == "train"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
