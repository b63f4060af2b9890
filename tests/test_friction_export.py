"""Exports as a Hugging Face user expects them (issue 18): the tokenizer named as the family's class
where that class encodes alike (else the generic one, never different ids), a ViT export that
``AutoImageProcessor`` loads with uer's pixels, and ``uer-convert --help`` naming each architecture once."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import save_random_uer
from PIL import Image

from uer.cli.convert import main as convert_main
from uer.config import compose_config, resolve
from uer.convert import convert
from uer.convert.configs import export_head
from uer.convert.tokenizer_config import GENERIC, PROBES, finish_tokenizer_config
from uer.data.images import square_pixels
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError


@pytest.mark.parametrize("name, model_type, family_class, written", [
    ("kjv-wordpiece", "bert", "BertTokenizerFast", "BertTokenizerFast"),
    ("kjv-bpe", "bert", "BertTokenizerFast", GENERIC),  # a BERT trained on byte-level BPE: BertTokenizer cannot
    ("kjv-wordpiece", "t5", "T5TokenizerFast", GENERIC),  # T5's class expects a Unigram vocabulary
])
def test_tokenizer_class_is_the_familys_where_it_encodes_alike(name, model_type, family_class, written, tmp_path):
    tokenizer = Tokenizer.load(f"builtin:{name}")
    tokenizer.save(tmp_path, model_max_length=64)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    assert finish_tokenizer_config(tmp_path, tokenizer, ("input_ids", "attention_mask"), family_class) == written
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == written and config["model_input_names"] == ["input_ids", "attention_mask"]
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == (written.removesuffix("Fast") if written != GENERIC else "TokenizersBackend")
    assert [hf(t, add_special_tokens=False)["input_ids"] for t in PROBES] == tokenizer.encode_batch(list(PROBES))


@pytest.mark.slow
def test_vit_export_has_the_image_processor_of_uers_pixels(tmp_path):
    save_random_uer(tmp_path / "uer", ["+model=vit_tiny", "model.dim=20", "model.num_heads=2", "model.ffn_dim=28",
                                       "model.num_layers=1", "model.image_size=12", "model.patch_size=4",
                                       "model.num_labels=3"])
    convert(tmp_path / "uer", tmp_path / "hf")
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert type(processor).__name__.startswith("ViTImageProcessor")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((17, 13), (12, 12))]
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    ours = torch.from_numpy(np.stack([square_pixels(image, 12) for image in images]))
    assert_parity(pixels, ours)


def test_convert_help_names_each_architecture_once(capsys):
    with pytest.raises(SystemExit) as done:
        convert_main(["--help"])
    assert done.value.code == 0
    t5 = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("t5:"))
    assert t5.strip() == "t5: T5ForConditionalGeneration"


@pytest.mark.parametrize("preset", ["lstm"])  # the translation Transformer exports as Marian: test_convert_marian.py
def test_a_preset_without_hf_family_says_so(preset):
    model_cfg = resolve(compose_config([f"+model={preset}", "model.vocab_size=50"])).model
    with pytest.raises(UerError, match=f"model {preset} has no Hugging Face family") as raised:
        export_head(model_cfg, None, None)
    assert "Bert" not in str(raised.value)
