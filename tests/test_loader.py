"""The one loader (``uer.convert.load_pretrained``): a Hugging Face directory, converted on the fly,
and its uer conversion load into the same model, config and tokenizer; a config naming code outside
the allowed packages is refused before anything is built; loading leaves the global RNG alone."""
from __future__ import annotations

import pytest
import torch
from convert_cases import CASES, batch, save_hf
from omegaconf import OmegaConf

from uer.convert import convert, load_pretrained
from uer.errors import UerError

BERT = next(c for c in CASES if c.architecture == "BertForPreTraining")


def test_a_hugging_face_dir_and_its_uer_conversion_load_the_same(tmp_path):
    save_hf(BERT, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    from_hf, from_uer = load_pretrained(tmp_path / "hf"), load_pretrained(tmp_path / "uer")
    assert not from_hf.model.training and not from_uer.model.training
    assert from_hf.config.model == from_uer.config.model
    assert from_hf.config.convert.architecture == from_uer.config.convert.architecture == BERT.architecture
    text = "w7 w8 w42 w98"
    assert from_hf.tokenizer.encode_batch([text]) == from_uer.tokenizer.encode_batch([text])
    hf_state, uer_state = from_hf.model.state_dict(), from_uer.model.state_dict()
    assert hf_state.keys() == uer_state.keys() and all(torch.equal(hf_state[k], uer_state[k]) for k in hf_state)
    fields = batch(BERT)
    with torch.no_grad():
        a, b = from_hf.model(fields), from_uer.model(fields)
    assert a.logits.keys() == b.logits.keys() == {"mlm", "sp"}
    for name in a.logits:  # the same weights in the same modules: equal up to float rounding
        scale = a.logits[name].abs().max().item()
        torch.testing.assert_close(a.logits[name], b.logits[name], rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6 * a.loss.abs().item())


def test_dtype_is_float32_unless_kept(tmp_path):
    save_hf(BERT, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    half = load_pretrained(tmp_path / "uer", dtype=torch.bfloat16)
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in load_pretrained(tmp_path / "uer").model.parameters()} == {torch.float32}


def test_a_hostile_target_is_refused_before_anything_is_built(tmp_path):
    save_hf(BERT, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    marker = tmp_path / "pwned"
    cfg = OmegaConf.load(tmp_path / "uer" / "config.yaml")
    cfg.model.encoder = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    OmegaConf.save(cfg, tmp_path / "uer" / "config.yaml")
    with pytest.raises(UerError, match=r"config.yaml: model.encoder._target_=os.system is outside the allowed"):
        load_pretrained(tmp_path / "uer")
    with pytest.raises(UerError, match=r"resolves to posix.system, not a class"):  # an allowed prefix is not enough
        load_pretrained(tmp_path / "uer", allowed_targets=["os."])
    assert not marker.exists()


def test_a_directory_of_neither_kind_and_a_file_are_refused(tmp_path):
    (tmp_path / "file.txt").write_text("text")
    with pytest.raises(UerError, match="neither a uer checkpoint"):
        load_pretrained(tmp_path)
    with pytest.raises(UerError, match="file.txt: is a file, expected a model directory"):
        load_pretrained(tmp_path / "file.txt")


def test_loading_leaves_the_global_rng_alone(tmp_path):
    save_hf(BERT, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    load_pretrained(tmp_path / "uer")
    load_pretrained(tmp_path / "hf")
    assert torch.equal(torch.rand(4), expected)
