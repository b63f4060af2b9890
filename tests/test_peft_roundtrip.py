"""LoRA adapters in PEFT's format: ``peft.PeftModel.from_pretrained`` on the exported base gives the
uer adapter model's logits (fused qkv split into q_proj/v_proj adapters for Llama with grouped-query
attention and query/value for BERT; GPT-2's fused ``c_attn``),
and a PEFT adapter imports back into uer with the same logits."""
from __future__ import annotations

import json

import pytest
import torch
from checks import assert_parity, one_line_error
from omegaconf import OmegaConf

from uer.cli.convert import main as convert_main
from uer.config import compose_config, resolve
from uer.convert import convert, uer_to_hf
from uer.convert.load import load_pretrained
from uer.convert.peft import export_peft, import_peft
from uer.models.adapter_checkpoint import BASE_KEY, base_record, save_adapter
from uer.models.adapters import load_base
from uer.models.build import build_model
from uer.models.pretrained import save_pretrained

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

SIZES = ["model.vocab_size=99", "model.dim=36", "model.num_heads=4", "model.ffn_dim=52", "model.num_layers=2",
         "model.max_seq_length=40"]
CASES = {"gpt2": ["+model=gpt2_tiny", *SIZES], "bert": ["+model=bert_base", "model/target=mlm", *SIZES],
         "llama": ["+model=llama_tiny", *SIZES[:1], "model.dim=48", "model.num_heads=6", *SIZES[3:],
                   "model.encoder.attention.num_kv_heads=2"]}  # grouped-query: q 48 rows, k and v 16


def lora_checkpoint(tmp_path, family: str, lora: dict):
    """A random base checkpoint of ``family`` and an adapter-only checkpoint on it with random
    (non-zero) LoRA factors; returns (base dir, adapter dir, adapter model in eval mode)."""
    cfg = resolve(compose_config(CASES[family]))
    torch.manual_seed(0)
    base = build_model(cfg.model)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_pretrained(tmp_path / "base", base, OmegaConf.create({"model": cfg.model}))
    adapted_cfg = OmegaConf.merge(cfg.model, {"adapters": {"lora": lora}})
    model = build_model(adapted_cfg)
    load_base(model, base.state_dict())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.2)
    run_cfg = OmegaConf.create({"model": adapted_cfg, BASE_KEY: base_record(tmp_path / "base")})
    save_adapter(tmp_path / "adapter", model, run_cfg)
    return tmp_path / "base", tmp_path / "adapter", model.eval()


def batch(family: str) -> dict[str, torch.Tensor]:
    """A padded batch with every real token as a label."""
    ids = torch.randint(5, 99, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    out = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    if family == "bert":
        out["token_type_ids"] = torch.zeros_like(ids)
    return out


def uer_logits(model, b) -> torch.Tensor:
    """The uer model's logits at the scored positions."""
    with torch.no_grad():
        out = model(b)
    return next(iter(out.logits.values()))


def hf_logits(model, b) -> torch.Tensor:
    """The Hugging Face model's logits at the positions uer scores."""
    with torch.no_grad():
        logits = model(**b).logits
    labels = b["labels"]
    return logits[:, :-1][labels[:, 1:] != -100] if "token_type_ids" not in b else logits[labels != -100]


LLAMA_ALL = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.parametrize(("family", "target", "hf_modules"), [
    ("llama", ["q", "v"], ["q_proj", "v_proj"]),
    pytest.param("llama", "all-linear", LLAMA_ALL, marks=pytest.mark.slow),
    pytest.param("bert", ["q", "v"], ["query", "value"], marks=pytest.mark.slow),
    pytest.param("gpt2", ["qkv", "o"], ["attn.c_proj", "c_attn"], marks=pytest.mark.slow),
    pytest.param("gpt2", ["q", "v", "down"], ["c_attn", "mlp.c_proj"], marks=pytest.mark.slow),  # slices of c_attn
])
def test_peft_loads_the_export_with_equal_logits(tmp_path, family, target, hf_modules):
    base_dir, adapter_dir, model = lora_checkpoint(tmp_path, family, {"r": 3, "alpha": 5, "target": target})
    uer_to_hf(base_dir, tmp_path / "hf")
    convert(adapter_dir, tmp_path / "peft")  # the library's one entry routes a LoRA checkpoint to PEFT
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["target_modules"] == hf_modules
    hf = transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    reference = peft.PeftModel.from_pretrained(hf.from_pretrained(tmp_path / "hf"), tmp_path / "peft").eval()
    b = batch(family)
    expected = uer_logits(model, b)
    assert_parity(hf_logits(reference, b), expected)
    plain = hf.from_pretrained(tmp_path / "hf").eval()
    assert (hf_logits(plain, b) - expected).abs().max() > 1e-2  # the adapter changes the logits

    convert(tmp_path / "peft", tmp_path / "back", base=base_dir)  # and a PEFT adapter to uer
    back = load_pretrained(tmp_path / "back")
    assert_parity(uer_logits(back.model, b), expected)
    if family != "gpt2":  # GPT-2's slices of c_attn come back as one adapter on the whole qkv
        assert back.config.model.adapters.lora.target == (["down", "gate", "k", "o", "q", "up", "v"]
                                                          if target == "all-linear" else target)


@pytest.mark.slow
def test_command_line_exports_imports_and_merges(tmp_path, capsys):
    base_dir, adapter_dir, model = lora_checkpoint(tmp_path, "gpt2", {"r": 2, "alpha": 4, "target": "all-linear"})
    b = batch("gpt2")
    assert convert_main([str(adapter_dir), str(tmp_path / "peft")]) == 0
    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["target_modules"] == \
        ["c_attn", "c_fc", "c_proj"]  # both c_proj modules: the short name names exactly them
    assert convert_main([str(tmp_path / "peft"), str(tmp_path / "back")]) == 0  # base: base_model_name_or_path
    assert_parity(uer_logits(load_pretrained(tmp_path / "back").model, b), uer_logits(model, b))
    assert convert_main([str(adapter_dir), str(tmp_path / "merged"), "--merge-adapter"]) == 0
    merged = load_pretrained(tmp_path / "merged")
    assert "adapters" not in merged.config.model and BASE_KEY not in merged.config
    assert_parity(uer_logits(merged.model, b), uer_logits(model, b))
    capsys.readouterr()
    assert convert_main([str(base_dir), str(tmp_path / "x"), "--merge-adapter"]) == 2
    assert capsys.readouterr().err.strip().endswith("has no LoRA adapters (model.adapters) to merge")
    assert not (tmp_path / "x").exists()


def test_bad_adapter_inputs_fail_in_one_line(tmp_path):
    base_dir, adapter_dir, model = lora_checkpoint(tmp_path, "gpt2", {"r": 2, "alpha": 4})
    assert_parity(uer_logits(load_pretrained(adapter_dir).model, batch("gpt2")), uer_logits(model, batch("gpt2")))
    export_peft(adapter_dir, tmp_path / "peft")  # its base_model_name_or_path: base_dir, moved below
    other = resolve(compose_config(CASES["gpt2"]))
    save_pretrained(base_dir, build_model(other.model), OmegaConf.create({"model": other.model}))
    one_line_error(lambda: load_pretrained(adapter_dir), "differs from the one the adapter was trained on")
    base_dir.rename(tmp_path / "moved")
    one_line_error(lambda: load_pretrained(adapter_dir), f"its base model {base_dir} is missing")
    (tmp_path / "prefix").mkdir()
    (tmp_path / "prefix" / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    one_line_error(lambda: import_peft(tmp_path / "prefix", tmp_path / "out", base=tmp_path / "moved"),
                   "only LoRA adapters without trained biases import")
    one_line_error(lambda: import_peft(tmp_path / "peft", tmp_path / "out"), "is not a local directory; pass --base")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_adapter_peft_made_imports_with_equal_logits(tmp_path):
    """An adapter peft itself created and saved (rsLoRA, a per-module alpha) on the exported Llama."""
    base_dir, _, _ = lora_checkpoint(tmp_path, "llama", {"r": 2, "alpha": 4})
    uer_to_hf(base_dir, tmp_path / "hf")
    config = peft.LoraConfig(r=4, lora_alpha=6, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True,
                             alpha_pattern={"down_proj": 3})
    torch.manual_seed(2)
    reference = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf"), config)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    reference.save_pretrained(tmp_path / "peft")
    import_peft(tmp_path / "peft", tmp_path / "uer", base=base_dir)
    b = batch("llama")
    assert_parity(uer_logits(load_pretrained(tmp_path / "uer").model, b), hf_logits(reference.eval(), b))
