"""uer-convert on bad input: one-line errors, a non-zero exit, and no destination left behind."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from convert_cases import CASES, save_hf
from safetensors.torch import load_file, save_file

from uer.cli.convert import main
from uer.convert import convert
from uer.errors import UerError

BERT = next(c for c in CASES if c.architecture == "BertForPreTraining")
GPT2 = next(c for c in CASES if c.architecture == "GPT2LMHeadModel")


@pytest.fixture()
def hf_dir(tmp_path):
    save_hf(BERT, tmp_path / "hf")
    return tmp_path / "hf"


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def fails(src, dst, match: str, architecture=None) -> None:
    """Converting must raise a one-line UerError matching ``match`` and leave nothing at or beside dst."""
    with pytest.raises(UerError, match=match) as info:
        convert(src, dst, architecture)
    assert "\n" not in str(info.value)
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")]


def test_unsupported_architecture_and_model_type(hf_dir, tmp_path):
    edit_config(hf_dir, architectures=["BertForMultipleChoice"])
    fails(hf_dir, tmp_path / "out", "BertForMultipleChoice is not supported.*BertForMaskedLM")
    edit_config(hf_dir, architectures=[])
    fails(hf_dir, tmp_path / "out", "--arch")
    edit_config(hf_dir, model_type="mixtral")
    fails(hf_dir, tmp_path / "out", "model_type 'mixtral' is not supported; supported: bert, roberta")


def test_directory_without_weights(hf_dir, tmp_path):
    (hf_dir / "model.safetensors").unlink()
    fails(hf_dir, tmp_path / "out", "no weights")


def test_truncated_safetensors(hf_dir, tmp_path):
    path = hf_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fails(hf_dir, tmp_path / "out", "model.safetensors: not a readable safetensors file")


def test_sizes_that_contradict_the_weights(hf_dir, tmp_path):
    edit_config(hf_dir, hidden_size=40)
    fails(hf_dir, tmp_path / "out", r"sizes in config.json contradict the weights in 45 tensors, e.g. "
          r"bert.embeddings.LayerNorm.weight: weights \(36,\), config \(40,\)")
    edit_config(hf_dir, hidden_size=36, num_hidden_layers=4)
    fails(hf_dir, tmp_path / "out", r"missing \[bert.encoder.layer.3")
    edit_config(hf_dir, num_hidden_layers=2)
    fails(hf_dir, tmp_path / "out", r"unmapped \[bert.encoder.layer.2")


def test_config_features_uer_does_not_model(hf_dir, tmp_path):
    edit_config(hf_dir, position_embedding_type="relative_key")
    fails(hf_dir, tmp_path / "out", "position_embedding_type='relative_key' has no uer equivalent")
    edit_config(hf_dir, position_embedding_type="absolute", hidden_act="tanh")
    fails(hf_dir, tmp_path / "out", "activation 'tanh' has no uer equivalent")


def test_untied_output_layer(tmp_path):
    save_hf(GPT2, tmp_path / "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    tensors["lm_head.weight"] = torch.randn_like(tensors["transformer.wte.weight"])
    save_file(tensors, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    fails(tmp_path / "hf", tmp_path / "out", "lm_head.weight differs from transformer.wte.weight")


def test_tied_copies_and_buffers_in_old_checkpoints_are_accepted(tmp_path):
    save_hf(GPT2, tmp_path / "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    tensors["transformer.h.0.attn.bias"] = torch.ones(1, 1, 40, 40).tril()
    save_file(tensors, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    convert(tmp_path / "hf", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_existing_destination_and_missing_source(hf_dir, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UerError, match="already exists"):
        convert(hf_dir, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())
    fails(tmp_path / "nowhere", tmp_path / "out2", "no such directory")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", tmp_path / "out3", "neither a uer checkpoint")


def test_failure_while_writing_leaves_no_destination(hf_dir, tmp_path, monkeypatch):
    from uer.data.tokenizer import Tokenizer

    def broken(self, directory, model_max_length=None):
        raise UerError(f"tokenizer {directory}: cannot write (disk full)")

    monkeypatch.setattr(Tokenizer, "save", broken)
    fails(hf_dir, tmp_path / "out", "disk full")


def test_broken_uer_checkpoint(hf_dir, tmp_path):
    convert(hf_dir, tmp_path / "uer")
    shutil.copytree(tmp_path / "uer", tmp_path / "cut")
    path = tmp_path / "cut" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    fails(tmp_path / "cut", tmp_path / "out", "not a readable safetensors file")
    (tmp_path / "uer" / "model.safetensors").unlink()
    fails(tmp_path / "uer", tmp_path / "out", "no such weights file")


def test_command_line_error_is_one_line_and_exit_2(hf_dir, tmp_path, capsys):
    (hf_dir / "model.safetensors").unlink()
    assert main([str(hf_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no weights" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_command_line_help_lists_families(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("BertForPreTraining", "RobertaForMaskedLM", "AlbertForMaskedLM", "GPT2LMHeadModel", "ViTModel"):
        assert name in out
