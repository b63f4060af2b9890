"""uer-convert for encoder-decoders (T5, T5 v1.1, BART, PEGASUS): parity with transformers on padded
batches (encoder and decoder hidden states, logits, loss) with random weights and odd sizes, and
bit-identical round trips in both directions."""
from __future__ import annotations

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import hf_config_dict, hf_tokenizer, load_uer, same_tensors
from safetensors.torch import load_file
from seq2seq_cases import CASES, PAD, save_hf

from uer.config import compose_config, resolve
from uer.convert import convert
from uer.data.tokenizer import Tokenizer
from uer.models import build_model
from uer.train.checkpoint import load_config, save_checkpoint



def batch(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded source (lengths 10, 7, 4) and target (6, 5, 3) sides with labels."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for prefix, lengths in (("", [10, 7, 4]), ("decoder_", [6, 5, 3])):
        lengths = torch.tensor(lengths)
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        ids = torch.randint(3, 99, mask.shape, generator=g).masked_fill(mask == 0, PAD[CASES[name][0]])
        out[f"{prefix}input_ids"], out[f"{prefix}attention_mask"] = ids, mask
    labels = torch.randint(3, 99, out["decoder_input_ids"].shape, generator=g)
    out["labels"] = labels.masked_fill(out["decoder_attention_mask"] == 0, -100)
    return out


@pytest.mark.parametrize("name", CASES)
def test_parity_with_transformers(name, tmp_path):
    hf = save_hf(name, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer")
    fields = batch(name)
    with torch.no_grad():
        ref = hf(**fields, output_hidden_states=True)
        memory, mask = model.encode(fields)
        hidden = model.decode(fields, memory, mask)
        out = model(fields)
    src, tgt = fields["attention_mask"].bool(), fields["decoder_attention_mask"].bool()
    assert_parity(memory[src], ref.encoder_last_hidden_state[src])
    assert_parity(hidden[tgt], ref.decoder_hidden_states[-1][tgt])
    assert_parity(model.logits(hidden)[tgt], ref.logits[tgt])
    assert_parity(out.logits["lm"], ref.logits[fields["labels"] != -100])
    assert_parity(out.loss, ref.loss)


@pytest.mark.parametrize("name", CASES)
def test_hf_uer_hf_is_bit_identical_and_loads_cleanly(name, tmp_path):
    save_hf(name, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert hf_config_dict(tmp_path / "back") == hf_config_dict(tmp_path / "hf")
    model, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(model).__name__ == CASES[name][1]
    assert not any(info.values()), info
    text = "w7 w42 w98 w5"
    ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")(text)["input_ids"]
    assert ids == hf_tokenizer(CASES[name][0])(text)["input_ids"]


def test_t5_variants_map_to_the_right_heads(tmp_path):
    """v1.0: tied head, scaled input, ReLU; v1.1: own head, unscaled, gated GELU."""
    for name, tied, gated in (("t5", True, False), ("t5_v1_1", False, True)):
        save_hf(name, tmp_path / name)
        convert(tmp_path / name, tmp_path / f"{name}_uer")
        cfg = load_config(tmp_path / f"{name}_uer").model
        assert cfg.target.lm.scale_input == tied and cfg.encoder.ffn.gated == gated
        assert (cfg.target.lm.tie_decoder_to is not None) == tied
        assert cfg.encoder.relative_position_buckets == 8 and cfg.encoder.attention.head_dim is None


SIZES = ["model.vocab_size=99", "model.dim=36", "model.num_heads=4", "model.ffn_dim=52", "model.num_layers=3",
         "model.num_decoder_layers=2"]
UER_CASES = {
    "t5": (["+model=t5_tiny", *SIZES], "t5"),
    "t5_v1_1": (["+model=t5_v1_1_small", *SIZES, "model.encoder.attention.head_dim=7"], "t5"),
    "bart": (["+model=bart_tiny", *SIZES, "model.max_seq_length=42"], "bart"),
    "pegasus": (["+model=pegasus_base", *SIZES, "model.max_seq_length=40"], "pegasus"),
}


@pytest.mark.parametrize("name", UER_CASES)
def test_uer_hf_uer_is_bit_identical(name, tmp_path):
    overrides, family = UER_CASES[name]
    cfg = resolve(compose_config(overrides))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf_tokenizer(family).save_pretrained(tmp_path / "tok")
    save_checkpoint(tmp_path / "uer", model, cfg, Tokenizer.load(tmp_path / "tok"), None)
    convert(tmp_path / "uer", tmp_path / "hf")
    hf, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    fields = batch(name)
    with torch.no_grad():  # the exported model computes what the uer model computes
        assert_parity(model.eval()(fields).loss, hf.eval()(**fields).loss)
    convert(tmp_path / "hf", tmp_path / "back")
    same_tensors(tmp_path / "uer" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    assert load_config(tmp_path / "back").model == load_config(tmp_path / "uer").model
    assert load_config(tmp_path / "back").convert.initialized == []


def test_sinusoid_tables_are_copied_as_stored(tmp_path):
    save_hf("pegasus", tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    stored = load_file(str(tmp_path / "hf" / "model.safetensors"))["model.encoder.embed_positions.weight"]
    assert torch.equal(load_uer(tmp_path / "uer").embedding.position.weight, stored)
