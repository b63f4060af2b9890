"""uer-convert: parity with transformers for every family and head, and bit-identical round trips
in both directions (state dict and config)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import CASES, batch, hf_config_dict, hf_inputs, hf_tokenizer, load_uer, same_tensors, save_hf
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from uer.config import compose_config, resolve
from uer.convert import convert
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint



def reference_logits(case, ref, labels) -> dict[str, torch.Tensor]:
    """The HF logits at the positions uer's targets score, keyed by uer target name."""
    if case.family == "vit":
        return {"cls": ref.logits}
    if case.family == "gpt2":
        return {"lm": ref.logits[:, :-1][labels[:, 1:] != -100]}
    pretraining = case.architecture.endswith("PreTraining")
    out = {"mlm": (ref.prediction_logits if pretraining else ref.logits)[labels != -100]}
    if pretraining:
        out["sp"] = ref.seq_relationship_logits if case.family == "bert" else ref.sop_logits
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.architecture)
def test_parity_with_transformers(case, tmp_path):
    hf = save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch(case)
    base_fields = {k: v for k, v in fields.items() if k in ("input_ids", "attention_mask", "token_type_ids",
                                                            "pixel_values")}
    with torch.no_grad():
        base = hf.base_model(**base_fields)
        hidden, _ = model.encode(fields)
        real = fields.get("attention_mask", torch.ones(hidden.shape[:2])).bool()
        assert_parity(hidden[real], base.last_hidden_state[real])
        if case.architecture in ("BertModel", "ViTModel"):
            pooler = model.target.sp.pooler if case.family == "bert" else model.target.cls.pooler
            assert_parity(torch.tanh(pooler(hidden[:, 0])), base.pooler_output)
            return
        ref = hf(**hf_inputs(case, fields))
        out = model(fields)
    expected = reference_logits(case, ref, fields["labels"])
    assert out.logits.keys() == expected.keys()
    for name, logits in expected.items():
        assert_parity(out.logits[name], logits)
    assert_parity(out.loss, ref.loss)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.architecture)
def test_hf_uer_hf_is_bit_identical_and_loads_cleanly(case, tmp_path):
    save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    auto = getattr(transformers, case.auto_class)
    model, info = auto.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(model).__name__ == case.architecture
    assert not any(info.values()), info
    if case.family != "vit":
        text = "w7 w42 w98 w5"
        ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")(text)["input_ids"]
        assert ids == hf_tokenizer(case.family)(text)["input_ids"]
    if case.family == "gpt2":
        generation = transformers.GenerationConfig.from_pretrained(tmp_path / "back")
        assert generation.eos_token_id == 0


SIZES = ["model.vocab_size=99", "model.dim=36", "model.num_heads=4", "model.ffn_dim=52", "model.num_layers=3"]
UER_CASES = {
    "BertForPreTraining": ["+model=bert_tiny", *SIZES, "model.max_seq_length=40"],
    "BertForMaskedLM": ["+model=bert_base", "model/target=mlm", *SIZES, "model.encoder.ffn.activation=relu"],
    "RobertaForMaskedLM": ["+model=roberta_base", *SIZES, "model.max_seq_length=40"],
    "AlbertForPreTraining": ["+model=albert_base", *SIZES, "model.emb_dim=20"],
    "AlbertForMaskedLM": ["+model=albert_base", "model/target=mlm", *SIZES, "model.emb_dim=20"],
    "GPT2LMHeadModel": ["+model=gpt2_tiny", *SIZES, "model.max_seq_length=40"],
    "ViTForImageClassification": ["+model=vit_tiny", *SIZES[1:], "model.image_size=12", "model.patch_size=4",
                                  "model.num_labels=5"],
    "ViTModel": ["+model=vit_base_16", *SIZES[1:], "model.image_size=12", "model.patch_size=4",
                 "model.num_labels=5", "model.target.cls.pooler=true"],
}
FAMILY_OF = {"Bert": "bert", "Roberta": "roberta", "Albert": "albert", "GPT2": "gpt2", "ViT": "vit"}


def save_uer(architecture: str, directory, tmp_path, seed: int = 0, extra: tuple = ()):
    """A uer checkpoint of a tiny model with random weights (and a tokenizer for text models)."""
    cfg = resolve(compose_config(UER_CASES[architecture] + list(extra)))
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    family = next(f for prefix, f in FAMILY_OF.items() if architecture.startswith(prefix))
    tokenizer = None
    if family != "vit":
        hf_tokenizer(family).save_pretrained(tmp_path / "tok")
        tokenizer = Tokenizer.load(tmp_path / "tok")
    save_checkpoint(directory, model, cfg, tokenizer, None)
    return model


@pytest.mark.parametrize("architecture", [a for a in UER_CASES if a != "ViTModel"])
def test_uer_hf_uer_is_bit_identical(architecture, tmp_path):
    save_uer(architecture, tmp_path / "uer", tmp_path)
    convert(tmp_path / "uer", tmp_path / "hf")
    assert hf_config_dict(tmp_path / "hf")["architectures"] == [architecture]
    auto = getattr(transformers, next(c.auto_class for c in CASES if c.architecture == architecture))
    _, info = auto.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    original, back = load_config(tmp_path / "uer"), load_config(tmp_path / "back")
    assert OmegaConf.to_container(back.model) == OmegaConf.to_container(original.model)
    assert back.convert.initialized == []


ENCODER_ONLY = {"BertModel": ("BertForPreTraining", {"target.mlm.dense.weight", "target.mlm.dense.bias",
                                                     "target.mlm.norm.weight", "target.mlm.norm.bias",
                                                     "target.mlm.decoder.bias", "target.sp.classifier.weight",
                                                     "target.sp.classifier.bias"}),
                "ViTModel": ("ViTModel", {"target.cls.classifier.weight", "target.cls.classifier.bias"})}


@pytest.mark.parametrize("architecture", ENCODER_ONLY)
def test_encoder_only_export_drops_heads_and_import_records_them(architecture, tmp_path):
    source, heads = ENCODER_ONLY[architecture]
    save_uer(source, tmp_path / "uer", tmp_path)
    convert(tmp_path / "uer", tmp_path / "hf", architecture=architecture)
    hf, info = transformers.AutoModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert type(hf).__name__ == architecture and not any(info.values()), info
    convert(tmp_path / "hf", tmp_path / "back")
    record = load_config(tmp_path / "back").convert
    assert record.architecture == architecture and set(record.initialized) == heads
    before = load_file(str(tmp_path / "uer" / "model.safetensors"))
    after = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert before.keys() == after.keys()
    for key in before:  # all but the heads the architecture lacks come back bit for bit
        assert torch.equal(before[key], after[key]) != (key in heads), key
    convert(tmp_path / "back", tmp_path / "again")  # the recorded architecture is the default export
    assert hf_config_dict(tmp_path / "again")["architectures"] == [architecture]
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "again" / "model.safetensors")


def test_export_refuses_what_the_architecture_cannot_express(tmp_path):
    save_uer("BertForMaskedLM", tmp_path / "uer", tmp_path)
    with pytest.raises(UerError, match="BertForPreTraining"):
        convert(tmp_path / "uer", tmp_path / "a", architecture="BertForPreTraining")
    with pytest.raises(UerError, match="not supported for this model"):
        convert(tmp_path / "uer", tmp_path / "b", architecture="GPT2LMHeadModel")
    save_uer("BertForPreTraining", tmp_path / "pre", tmp_path, extra=("model.encoder.norm_position=pre",))
    with pytest.raises(UerError, match="norm_position"):
        convert(tmp_path / "pre", tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_roberta_export_needs_pad_id_before_the_first_position(tmp_path):
    cfg = resolve(compose_config(UER_CASES["RobertaForMaskedLM"]))
    save_checkpoint(tmp_path / "uer", build_model(cfg.model), cfg, Tokenizer.load("builtin:kjv-wordpiece"), None)
    with pytest.raises(UerError, match="pad_token_id=1"):
        convert(tmp_path / "uer", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_other_weight_layouts_convert_to_the_same_checkpoint(tmp_path):
    case = next(c for c in CASES if c.architecture == "BertForPreTraining")
    model = save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    # the layout of older transformers: pytorch_model.bin with tied copies and the position_ids buffer
    shutil.copytree(tmp_path / "hf", tmp_path / "bin", ignore=shutil.ignore_patterns("model.safetensors"))
    state = dict(model.state_dict(), **{"bert.embeddings.position_ids": torch.arange(40)[None]})
    assert "cls.predictions.decoder.weight" in state
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    for layout in ("bin", "sharded"):
        convert(tmp_path / layout, tmp_path / f"uer-{layout}")
        same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / f"uer-{layout}" / "model.safetensors")


def test_half_precision_stays_half_precision(tmp_path):
    case = next(c for c in CASES if c.architecture == "GPT2LMHeadModel")
    save_hf(case, tmp_path / "fp32")
    half = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "fp32").to(torch.bfloat16)
    half.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    assert {t.dtype for t in load_file(str(tmp_path / "uer" / "model.safetensors")).values()} == {torch.bfloat16}
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back")["dtype"] == "bfloat16"


def test_command_line_converts_both_ways(tmp_path):
    from uer.cli.convert import main

    case = next(c for c in CASES if c.architecture == "BertForMaskedLM")
    save_hf(case, tmp_path / "hf")
    assert main([str(tmp_path / "hf"), str(tmp_path / "uer")]) == 0
    assert main([str(tmp_path / "uer"), str(tmp_path / "back"), "--arch", "BertForMaskedLM"]) == 0
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")


def test_init_from_accepts_both_kinds_of_directory(tmp_path):
    from uer.convert import load_pretrained  # what trainer.init_from reads with

    save_hf(next(c for c in CASES if c.architecture == "BertForMaskedLM"), tmp_path / "hf")
    assert load_pretrained(tmp_path / "hf").config.convert.architecture == "BertForMaskedLM"
    convert(tmp_path / "hf", tmp_path / "uer")
    assert load_pretrained(tmp_path / "uer").config.convert.architecture == "BertForMaskedLM"
    with pytest.raises(UerError, match="neither a uer checkpoint"):
        load_pretrained(tmp_path)


def test_weights_decide_the_head_when_config_json_misnames_it(tmp_path):
    # bert-base-uncased's config.json says BertForMaskedLM, but it ships the NSP head and the pooler too
    save_hf(next(c for c in CASES if c.architecture == "BertForPreTraining"), tmp_path / "hf")
    config = hf_config_dict(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    convert(tmp_path / "hf", tmp_path / "uer")
    assert load_config(tmp_path / "uer").convert.architecture == "BertForPreTraining"
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")


def test_tensors_transformers_does_not_load_are_left_out_and_recorded(tmp_path):
    # RoBERTa's MLM checkpoints carry a pooler that RobertaForMaskedLM does not have
    save_hf(next(c for c in CASES if c.architecture == "RobertaForMaskedLM"), tmp_path / "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    pooler = {"roberta.pooler.dense.weight": torch.randn(36, 36), "roberta.pooler.dense.bias": torch.randn(36)}
    save_file({**tensors, **pooler}, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    convert(tmp_path / "hf", tmp_path / "uer")
    assert sorted(load_config(tmp_path / "uer").convert.unused) == sorted(pooler)
    convert(tmp_path / "uer", tmp_path / "back")
    assert load_file(str(tmp_path / "back" / "model.safetensors")).keys() == tensors.keys()


@pytest.mark.parametrize("breakage", ["swap query and key rows", "0.1% scale on one norm", "transposed output projection"])
def test_parity_tolerance_still_catches_a_mapping_error(breakage, tmp_path):
    """The magnitude-scaled tolerance of :func:`checks.assert_parity` is loose enough for float
    rounding across library versions and still fails on the errors a wrong mapping makes."""
    case = next(c for c in CASES if c.architecture == "BertForMaskedLM")
    hf = save_hf(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch(case)
    layer = model.encoder.layers[1]
    with torch.no_grad():
        ref = hf(**hf_inputs(case, fields)).logits[fields["labels"] != -100]
        assert_parity(model(fields).logits["mlm"], ref)  # intact: passes
        if breakage == "swap query and key rows":
            q, k, v = layer.attention.qkv.weight.chunk(3)
            layer.attention.qkv.weight.copy_(torch.cat([k, q, v]))
        elif breakage == "0.1% scale on one norm":
            layer.ffn_norm.weight.mul_(1.001)
        else:
            square = layer.attention.out.weight
            square.copy_(square.T.clone())
        with pytest.raises(AssertionError):
            assert_parity(model(fields).logits["mlm"], ref)
