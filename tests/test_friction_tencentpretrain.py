"""Coming from TencentPretrain / UER-py (issue 18): ``uer-convert their.bin DST --config their.json
--vocab vocab.txt`` imports their BERT and GPT-2 checkpoints. Each case builds a transformers model
with random weights and odd sizes, writes its tensors under their names (as their
``scripts/convert_*_from_huggingface_to_tencentpretrain.py`` lay them out), imports, and checks
that every tensor lands where transformers has it and that the hidden states agree."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers
from checks import assert_parity

from uer.cli.convert import main as convert_main
from uer.config import compose_config
from uer.convert import FAMILIES, load_pretrained
from uer.convert.engine import num_layers, to_hf
from uer.convert.reader import with_num_labels
from uer.convert.tencentpretrain import read_state
from uer.convert.tencentpretrain import to_hf as their_to_hf
from uer.errors import UerError

SIZES = {"vocab": 37, "dim": 36, "heads": 4, "ffn": 52, "layers": 2, "positions": 40}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def norm(out: dict, theirs: str, hf: dict, name: str) -> None:
    out[f"{theirs}.gamma"], out[f"{theirs}.beta"] = hf[f"{name}.weight"], hf[f"{name}.bias"]


def linear(out: dict, theirs: str, hf: dict, name: str, transposed: bool = False) -> None:
    weight = hf[f"{name}.weight"]
    out[f"{theirs}.weight"], out[f"{theirs}.bias"] = (weight.t() if transposed else weight), hf[f"{name}.bias"]


def bert_layout(hf: dict) -> dict:
    """Their BERT names for a ``BertForPreTraining`` state dict (segment 0 = their padding row)."""
    embedding = ("embedding.word.embedding.weight", "embedding.pos.embedding.weight", "embedding.seg.embedding.weight")
    segments = hf["bert.embeddings.token_type_embeddings.weight"]
    out = {embedding[0]: hf["bert.embeddings.word_embeddings.weight"],
           embedding[1]: hf["bert.embeddings.position_embeddings.weight"],
           embedding[2]: torch.cat([torch.randn(1, segments.shape[1]), segments])}
    norm(out, "embedding.layer_norm", hf, "bert.embeddings.LayerNorm")
    for i in range(SIZES["layers"]):
        theirs, ours = f"encoder.transformer.{i}", f"bert.encoder.layer.{i}"
        for j, part in enumerate(("query", "key", "value")):
            linear(out, f"{theirs}.self_attn.linear_layers.{j}", hf, f"{ours}.attention.self.{part}")
        linear(out, f"{theirs}.self_attn.final_linear", hf, f"{ours}.attention.output.dense")
        norm(out, f"{theirs}.layer_norm_1", hf, f"{ours}.attention.output.LayerNorm")
        linear(out, f"{theirs}.feed_forward.linear_1", hf, f"{ours}.intermediate.dense")
        linear(out, f"{theirs}.feed_forward.linear_2", hf, f"{ours}.output.dense")
        norm(out, f"{theirs}.layer_norm_2", hf, f"{ours}.output.LayerNorm")
    linear(out, "target.sp.linear_1", hf, "bert.pooler.dense")
    linear(out, "target.sp.linear_2", hf, "cls.seq_relationship")
    linear(out, "target.mlm.linear_1", hf, "cls.predictions.transform.dense")
    norm(out, "target.mlm.layer_norm", hf, "cls.predictions.transform.LayerNorm")
    out["target.mlm.linear_2.weight"] = hf["bert.embeddings.word_embeddings.weight"]  # --tie_weights
    out["target.mlm.linear_2.bias"] = hf["cls.predictions.bias"]
    return out


def gpt2_layout(hf: dict) -> dict:
    """Their GPT-2 names for a ``GPT2LMHeadModel`` state dict (GPT-2's Conv1D stores (in, out))."""
    out = {"embedding.word.embedding.weight": hf["transformer.wte.weight"],
           "embedding.pos.embedding.weight": hf["transformer.wpe.weight"],
           "target.lm.output_layer.weight": hf["transformer.wte.weight"]}
    for i in range(SIZES["layers"]):
        theirs, ours = f"encoder.transformer.{i}", f"transformer.h.{i}"
        qkv_w, qkv_b = hf[f"{ours}.attn.c_attn.weight"].t().chunk(3), hf[f"{ours}.attn.c_attn.bias"].chunk(3)
        for j in range(3):
            out[f"{theirs}.self_attn.linear_layers.{j}.weight"] = qkv_w[j].contiguous()
            out[f"{theirs}.self_attn.linear_layers.{j}.bias"] = qkv_b[j].contiguous()
        linear(out, f"{theirs}.self_attn.final_linear", hf, f"{ours}.attn.c_proj", transposed=True)
        norm(out, f"{theirs}.layer_norm_1", hf, f"{ours}.ln_1")
        linear(out, f"{theirs}.feed_forward.linear_1", hf, f"{ours}.mlp.c_fc", transposed=True)
        linear(out, f"{theirs}.feed_forward.linear_2", hf, f"{ours}.mlp.c_proj", transposed=True)
        norm(out, f"{theirs}.layer_norm_2", hf, f"{ours}.ln_2")
    norm(out, "encoder.layer_norm", hf, "transformer.ln_f")
    return {k: v.contiguous() for k, v in out.items()}


def randomized(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model.eval()


def write_theirs(tmp_path, state: dict, config: dict):
    torch.save(state, tmp_path / "model.bin")
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    words = SPECIALS + [f"w{i}" for i in range(SIZES["vocab"] - len(SPECIALS))]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    return [str(tmp_path / "model.bin"), str(tmp_path / "uer"), "--config", str(tmp_path / "config.json"),
            "--vocab", str(tmp_path / "vocab.txt")]


def exported(path, architecture: str) -> dict:
    """The Hugging Face tensors of the uer checkpoint ``path`` as ``architecture`` (ties not stored)."""
    model, cfg, _ = load_pretrained(path)
    family = FAMILIES[cfg.model.name.split("_")[0]]
    return to_hf(family, family.head(architecture), model, num_layers(with_num_labels(cfg.model, 2)))[0], model


def test_bert_checkpoint_imports(tmp_path):
    hf = randomized(transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=SIZES["vocab"], hidden_size=SIZES["dim"], num_attention_heads=SIZES["heads"],
        intermediate_size=SIZES["ffn"], num_hidden_layers=SIZES["layers"],
        max_position_embeddings=SIZES["positions"], layer_norm_eps=1e-6)))
    argv = write_theirs(tmp_path, bert_layout(hf.state_dict()),
                        {"emb_size": 36, "hidden_size": 36, "feedforward_size": 52, "heads_num": 4, "layers_num": 2,
                         "max_seq_length": 40, "hidden_act": "gelu", "dropout": 0.1, "embedding": ["word", "pos", "seg"],
                         "encoder": "transformer", "mask": "fully_visible", "target": ["mlm", "sp"]})
    assert convert_main(argv) == 0
    tensors, model = exported(tmp_path / "uer", "BertForPreTraining")
    reference = hf.state_dict()
    for name, tensor in tensors.items():
        assert torch.equal(tensor, reference[name]), name
    ids = torch.randint(0, SIZES["vocab"], (2, 11), generator=torch.Generator().manual_seed(1))
    types = torch.tensor([[0] * 6 + [1] * 5] * 2)
    with torch.no_grad():
        hidden, _ = model.encode({"input_ids": ids, "token_type_ids": types})
        assert_parity(hidden, hf.bert(input_ids=ids, token_type_ids=types).last_hidden_state)
    assert load_pretrained(tmp_path / "uer").tokenizer.vocab_size == SIZES["vocab"]


@pytest.mark.slow
def test_gpt2_checkpoint_imports(tmp_path):
    hf = randomized(transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=SIZES["vocab"], n_embd=SIZES["dim"], n_head=SIZES["heads"], n_inner=SIZES["ffn"],
        n_layer=SIZES["layers"], n_positions=SIZES["positions"], layer_norm_epsilon=1e-6,
        activation_function="gelu_new")))
    argv = write_theirs(tmp_path, gpt2_layout(hf.state_dict()),
                        {"emb_size": 36, "hidden_size": 36, "feedforward_size": 52, "heads_num": 4, "layers_num": 2,
                         "max_seq_length": 40, "hidden_act": "gelu_fast", "dropout": 0.1, "embedding": ["word", "pos"],
                         "encoder": "transformer", "mask": "causal", "layernorm_positioning": "pre",
                         "target": ["lm"]})
    assert convert_main(argv) == 0
    tensors, model = exported(tmp_path / "uer", "GPT2LMHeadModel")
    reference = hf.state_dict()
    for name, tensor in tensors.items():
        assert torch.equal(tensor, reference[name]), name
    ids = torch.randint(0, SIZES["vocab"], (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_parity(model.logits(model.encode({"input_ids": ids})[0]), hf(input_ids=ids).logits)


def test_older_uer_py_names_are_read(tmp_path):
    table = torch.randn(5, 3)
    torch.save({"embedding.word_embedding.weight": table, "embedding.position_embedding.weight": table,
                "embedding.segment_embedding.weight": table, "encoder.transformer.0.layer_norm_1.gamma": table[0]},
               tmp_path / "old.bin")
    assert sorted(read_state(tmp_path / "old.bin")) == ["embedding.pos.embedding.weight", "embedding.seg.embedding.weight",
                                                        "embedding.word.embedding.weight",
                                                        "encoder.transformer.0.layer_norm_1.gamma"]


def test_bad_checkpoints_are_one_line(tmp_path, capsys):
    word = torch.randn(7, 4)
    untied = {"embedding.word.embedding.weight": word, "target.lm.output_layer.weight": word + 1}
    with pytest.raises(UerError, match="target.lm.output_layer.weight differs .* --tie_weights"):
        their_to_hf(untied, {"heads_num": 1}, tmp_path / "model.bin")
    with pytest.raises(UerError, match="hidden_act 'swish'"):
        their_to_hf(untied, {"hidden_act": "swish", "heads_num": 1}, tmp_path / "model.bin")
    argv = write_theirs(tmp_path, {"embedding.word.embedding.weight": word}, {"hidden_act": "gelu_fast"})
    assert convert_main(argv) == 2
    assert "heads_num" in capsys.readouterr().err
    assert convert_main([argv[0], str(tmp_path / "x")]) == 2  # a .bin without its config
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--config" in err


@pytest.mark.slow
def test_readme_flag_table_composes():
    """Every ``+model=...`` line of the README's TencentPretrain table is a config uer composes."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| TencentPretrain / UER-py | uer |"):]
    table = table[:table.index("\n\n")]
    lines = [m for row in table.splitlines()[2:] for m in re.findall(r"`(\+model=[^`]*)`", row.split("|")[2])]
    assert len(lines) >= 10, lines
    for line in lines:
        assert compose_config(line.split()).model.name == line.split()[0].split("=")[1], line
