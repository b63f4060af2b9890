"""Issue 14, class 6: bad values give one line, never a traceback or silent nonsense. Every numeric
option (optim, scheduler, trainer, data loader, model sizes of every part, the recipes' task and
finetune keys, uer-generate's numbers) is refused at start naming the key; a negative held-out size
no longer swaps train and eval; repeated labels, a byte order mark, a directory where a file belongs
and a damaged checkpoint are one line each; uer-soup refuses NaN/inf weights and writes nothing.

The many config cases call the check functions in-process; the commands run their ``main()``
in-process (exit status 2, one ``error:`` line, nothing written), on a tiny checkpoint built once."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from checks import digest, one_line_error
from omegaconf import OmegaConf
from runs import composed
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples import finetune, infer
from examples.classification import task as classification
from examples.features import read_tsv
from examples.tagging import task as tagging
from uer.cli import convert, generate, preprocess, pretrain, soup
from uer.cli.common import run_command
from uer.config import compose_config, resolve
from uer.data.loader import split_indices
from uer.data.tokenizer import Tokenizer
from uer.models.build import build_model
from uer.models.pretrained import save_pretrained
from uer.train.assemble import settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def changed(preset: str, **values) -> OmegaConf:
    """A writable copy of the composed run config of ``preset`` with ``values`` set (``a__b`` = ``a.b``)."""
    cfg = OmegaConf.create(OmegaConf.to_container(composed(preset)))
    for key, value in values.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def error_of(main, args: list[str], capsys) -> str:
    """Run ``main(args)``; assert exit status 2, no traceback and exactly one ``error: ...`` line,
    the last on stderr; return it."""
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and sum(line.startswith("error") for line in lines) == 1, err
    assert lines[-1].startswith("error: "), err
    return lines[-1]


# --- training options: settings() ----------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"optim__lr": -1.0}, "optim.lr=-1.0: must be > 0"),
    ({"optim__lr": 0.0}, "optim.lr=0.0: must be > 0"),
    ({"optim__lr": float("nan")}, "optim.lr=nan: must be > 0"),
    ({"optim__lr": float("inf")}, "optim.lr=inf: must be > 0"),
    ({"optim__eps": 0.0}, "optim.eps=0.0: must be > 0"),
    ({"optim__betas": [1.0, 0.999]}, "optim.betas=[1.0, 0.999]: must be two numbers in [0, 1)"),
    ({"optim__betas": [0.9, -0.1]}, "optim.betas=[0.9, -0.1]"),
    ({"optim__betas": [0.9]}, "optim.betas=[0.9]: must be two numbers"),
    ({"optim__momentum": 1.0}, "optim.momentum=1.0: must be in [0, 1)"),
    ({"optim__momentum": -0.5}, "optim.momentum=-0.5"),
    ({"optim__weight_decay": -0.01}, "optim.weight_decay=-0.01: must be >= 0"),
    ({"scheduler__warmup_ratio": 1.5}, "scheduler.warmup_ratio=1.5: must be in [0, 1]"),
    ({"scheduler__warmup_ratio": -0.1}, "scheduler.warmup_ratio=-0.1"),
    ({"scheduler__warmup_steps": -1}, "scheduler.warmup_steps=-1: must be >= 0"),
    ({"trainer__seed": -1}, "trainer.seed=-1: must be >= 0 and < 2**32"),
    ({"trainer__seed": 2**32}, "trainer.seed=4294967296"),
    ({"trainer__grad_clip": -1.0}, "trainer.grad_clip=-1.0: must be >= 0"),
    ({"trainer__device": "tpu"}, "trainer.device=tpu; choose auto, cpu or cuda"),
    ({"data__num_workers": -1}, "data.num_workers=-1: must be an integer >= 0"),
    ({"data__batch_size": 0}, "data.batch_size=0: must be an integer >= 1"),
    ({"data__eval_samples": -3}, "data.eval_samples=-3: must be an integer >= 0"),
    ({"data__eval_samples": 0.5}, "data.eval_samples=0.5: must be an integer"),
    ({"data__seed": -1}, "data.seed=-1: must be an integer >= 0 and < 2**32"),
])
def test_training_values_are_checked_at_start(values, message):
    one_line_error(lambda: settings(changed("bert_tiny", **values)), message)


def test_edge_values_are_accepted():
    cfg = changed("bert_tiny", optim__betas=[0.0, 0.0], optim__weight_decay=0.0, scheduler__warmup_ratio=1.0,
                  scheduler__warmup_steps=0, trainer__seed=2**32 - 1, trainer__grad_clip=0.0, data__eval_samples=0,
                  data__num_workers=0)
    run = settings(cfg)
    assert run.trainer.seed == 2**32 - 1 and run.optim.betas == [0.0, 0.0]


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda(device):
    one_line_error(lambda: settings(changed("bert_tiny", trainer__device=device)),
                   f"trainer.device={device}: no CUDA device is available")


def test_negative_eval_samples_never_swaps_the_splits():
    with pytest.raises(ValueError, match="eval_samples=-3"):
        split_indices(100, -3, seed=0)
    train, held_out = split_indices(100, 0, seed=0)
    assert len(train) == 100 and len(held_out) == 0
    train, held_out = split_indices(100, 1000, seed=0)  # capped: training keeps 90%
    assert len(train) == 90 and len(held_out) == 10


# --- model sizes (every preset passing them: tests/test_config.py builds each one) ----------------

@pytest.mark.parametrize("preset, values, message", [
    ("bert_tiny", {"model__dim": 0}, "model.dim=0: must be an integer >= 1"),
    ("bert_tiny", {"model__num_heads": 0}, "model.num_heads=0: must be an integer >= 1"),
    ("bert_tiny", {"model__num_layers": 0}, "model.num_layers=0: must be an integer >= 1"),
    ("bert_tiny", {"model__ffn_dim": -4}, "model.ffn_dim=-4: must be an integer >= 1"),
    ("bert_tiny", {"model__vocab_size": 0}, "model.vocab_size=0: must be an integer >= 1"),
    ("bert_tiny", {"model__max_seq_length": 0}, "model.max_seq_length=0"),
    ("bert_tiny", {"model__dim": 2.5}, "model.dim=2.5: must be an integer >= 1"),
    ("bert_tiny", {"model__dropout": 1.5}, "model.dropout=1.5: must be a number in [0, 1)"),
    ("bert_tiny", {"model__norm_eps": 0.0}, "model.norm_eps=0.0: must be a finite number > 0"),
    ("bert_tiny", {"model__init_std": float("nan")}, "model.init_std=nan"),
    ("bert_tiny", {"model__num_heads": 5}, "model.encoder.attention.dim=128 is not divisible by "
                                           "model.encoder.attention.num_heads=5"),
    ("bert_tiny", {"model__embedding__parts__segment__num_segments": 0},
     "model.embedding.parts.segment.num_segments=0"),
    ("gpt2_tiny", {"model__encoder__attention__num_kv_heads": 3}, "is not divisible by "
                                                                 "model.encoder.attention.num_kv_heads=3"),
    ("t5_tiny", {"model__num_decoder_layers": 0}, "model.num_decoder_layers=0"),
    ("vit_tiny", {"model__patch_size": 0}, "model.patch_size=0"),
])
def test_model_sizes_are_checked_before_building(preset, values, message):
    cfg = changed(preset, **values)
    if cfg.model.get("vocab_size", 0) is None:
        cfg.model.vocab_size = 100
    one_line_error(lambda: build_model(cfg.model), message)


# --- commands: one error line, exit 2, nothing written --------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
    ("data.eval_samples=-3", "data.eval_samples=-3"),
])
def test_uer_pretrain_refuses_bad_values(override, message, tmp_path, capsys, small_corpus):
    out = tmp_path / "run"
    args = ["+model=bert_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={out}", "data.num_proc=1",
            "trainer.progress=false", override]
    assert message in error_of(pretrain.main, args, capsys)
    assert not out.exists()


def test_uer_preprocess_refuses_the_data_values_uer_pretrain_would(tmp_path, capsys, small_corpus):
    out = tmp_path / "dataset"
    args = ["data=bert", f"data.corpus={small_corpus}", f"output={out}", "data.num_proc=1", "data.seed=-1"]
    assert "data.seed=-1: must be an integer >= 0" in error_of(preprocess.main, args, capsys)
    assert not out.exists()


def test_uer_generate_refuses_bad_numbers(capsys):
    for args, message in [(["--temperature", "nan"], "--temperature=nan: must be a finite number"),
                          (["--length-penalty", "inf"], "--length-penalty=inf"),
                          (["--seed", "-1"], "--seed=-1: must be >= 0")]:
        assert message in error_of(generate.main, ["unused", "--prompt", "x", *args], capsys)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny bert checkpoint (weights, config.yaml, tokenizer) built without training."""
    cfg = compose_config(["+model=bert_tiny", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64",
                          "model.num_layers=1", "model.max_seq_length=64"])
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    cfg.model.vocab_size = tokenizer.vocab_size
    cfg = resolve(cfg)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "bert"
    save_pretrained(path, build_model(cfg.model), cfg, tokenizer)
    return path


def damaged(checkpoint: Path, tmp_path: Path, name: str) -> Path:
    """A copy of ``checkpoint`` whose file ``name`` is cut in half, or replaced by a directory
    (``name`` ending in ``/``)."""
    copy = tmp_path / f"damaged-{name.strip('/').replace('.', '_')}"
    shutil.copytree(checkpoint, copy)
    target = copy / name.strip("/")
    if name.endswith("/"):
        target.unlink()
        target.mkdir()
    else:
        os.truncate(target, target.stat().st_size // 2)
    return copy


SLOW = pytest.mark.slow  # the same code path as a quick case; run with -m slow
DAMAGES = [("model.safetensors", "model.safetensors: not a readable safetensors file"),
           ("config.yaml", "config"),
           pytest.param("tokenizer.json", "tokenizer.json: not a valid tokenizer.json", marks=SLOW),
           ("tokenizer.json/", "tokenizer.json: is a directory, expected a file"),
           pytest.param("model.safetensors/", "model.safetensors", marks=SLOW)]


@pytest.mark.parametrize("name, message", DAMAGES)
def test_soup_and_convert_refuse_a_damaged_checkpoint(name, message, checkpoint, tmp_path, capsys):
    bad = damaged(checkpoint, tmp_path, name)
    before = digest(checkpoint)
    line = error_of(soup.main, [str(tmp_path / "soup"), str(checkpoint), str(bad)], capsys)
    assert message in line and str(bad) in line
    line = error_of(convert.main, [str(bad), str(tmp_path / "hf")], capsys)
    assert message in line and str(bad) in line
    assert not (tmp_path / "soup").exists() and not (tmp_path / "hf").exists()
    assert digest(checkpoint) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]  # no staging dir left


def test_soup_refuses_non_finite_weights(checkpoint, tmp_path, capsys):
    bad = tmp_path / "nan"
    shutil.copytree(checkpoint, bad)
    weights = load_file(bad / "model.safetensors")
    name = sorted(weights)[-1]
    weights[name].view(-1)[0] = float("inf")
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    line = error_of(soup.main, [str(tmp_path / "soup"), str(checkpoint), str(bad)], capsys)
    assert f"error: {bad}: weight {name} holds NaN or infinite values" in line
    assert not (tmp_path / "soup").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["nan"]


# --- fine-tuning recipes -------------------------------------------------------------------------

@pytest.fixture
def tsv(tmp_path) -> Path:
    """A classification TSV that starts with a UTF-8 byte order mark."""
    path = tmp_path / "train.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + "label\ttext_a\n".encode() + "".join(f"{i % 2}\tverse {i}\n"
                                                                          for i in range(8)).encode())
    return path


def recipe(tsv: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [f"task.train={tsv}", f"task.dev={tsv}", "task.test=null", "task.test_nolabel=null",
            f"trainer.output_dir={tmp_path / 'out'}", "trainer.progress=false", *extra]


def run_recipe_main(task, args, capsys) -> str:
    return error_of(lambda a: finetune.main(task, str(EXAMPLES / "classification" / "train.py"), a), args, capsys)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1.0: must be > 0"),
    pytest.param("trainer.seed=-1", "trainer.seed=-1", marks=SLOW),
    ("task.seq_length=1", "task.seq_length=1: must be an integer >= 3"),
    pytest.param("task.batch_size=0", "task.batch_size=0: must be an integer >= 1", marks=SLOW),
    pytest.param("finetune.epochs=0", "finetune.epochs=0: must be >= 1", marks=SLOW),
    pytest.param("finetune.freeze_encoder_steps=-1", "finetune.freeze_encoder_steps=-1", marks=SLOW),
    pytest.param("finetune.layer_decay=0", "finetune.layer_decay=0.0: must be in (0, 1]", marks=SLOW),
    ("finetune.class_weights=[1.0,nan]", "finetune.class_weights=[1.0, nan]: must be finite numbers >= 0"),
])
def test_recipe_values_are_checked_before_anything_is_read(override, message, tsv, tmp_path, capsys, checkpoint):
    args = recipe(tsv, tmp_path, f"trainer.init_from={checkpoint}", override)
    assert message in run_recipe_main(classification, args, capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, message", [pytest.param(*DAMAGES[0], marks=SLOW), DAMAGES[1],
                                           pytest.param(*DAMAGES[2].values, marks=SLOW)])
def test_recipe_refuses_a_damaged_checkpoint(name, message, checkpoint, tsv, tmp_path, capsys):
    bad = damaged(checkpoint, tmp_path, name)
    line = run_recipe_main(classification, recipe(tsv, tmp_path, f"trainer.init_from={bad}"), capsys)
    assert message in line and str(bad) in line and not (tmp_path / "out").exists()


def test_bom_before_a_tsv_header_or_a_labels_file_is_dropped(tsv, tmp_path):
    rows = read_tsv(tsv, ("label", "text_a"))
    assert rows[0] == {"label": "0", "text_a": "verse 0"} and len(rows) == 8
    labels = tmp_path / "labels.json"
    labels.write_bytes(b"\xef\xbb\xbf" + json.dumps(["1", "0"]).encode())
    cfg = OmegaConf.create({"task": {"labels": str(labels)}})
    assert classification.label_names(cfg, rows) == (["1", "0"], ["1", "0"])
    tags = tmp_path / "tags.json"
    tags.write_bytes(b"\xef\xbb\xbf" + json.dumps({"O": 0, "B-X": 1}).encode())
    assert tagging.tag_names(OmegaConf.create({"task": {"labels": str(tags)}}), []) == ["O", "B-X"]


def test_bom_before_a_vocab_file_is_dropped(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"\xef\xbb\xbf" + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nverse\n".encode())
    tokenizer = Tokenizer.load(vocab)
    assert tokenizer.pad_token_id == 0 and tokenizer.token_to_id("[PAD]") == 0


@pytest.mark.parametrize("task, content, message", [
    (classification, json.dumps(["0", "1", "0"]), "label '0' appears twice"),
    (classification, '{"label": "a"}\n{"label": "b"}\n{"label": "a"}\n', "label 'a' appears twice"),
    (tagging, '{"O": 0, "B-X": 1, "B-X": 2}', "label 'B-X' appears twice"),
    (tagging, '{"O": 0, "B-X": 0}', "a distinct integer id per tag"),
    (tagging, json.dumps(["O", "B-X", "O"]), "label 'O' appears twice"),
])
def test_repeated_labels_are_refused(task, content, message, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(content, encoding="utf-8")
    cfg = OmegaConf.create({"task": {"labels": str(labels)}})
    names = classification.label_names if task is classification else tagging.tag_names
    one_line_error(lambda: names(cfg, []), f"task.labels={labels}", message)


def test_directory_where_a_file_belongs(tsv, tmp_path, capsys, checkpoint):
    folder = tmp_path / "folder"
    folder.mkdir()
    for key in ("task.train", "task.labels"):
        args = recipe(tsv, tmp_path, f"trainer.init_from={checkpoint}", f"{key}={folder}")
        assert f"{folder}: is a directory, expected a file" in run_recipe_main(classification, args, capsys)
    line = run_recipe_main(classification, recipe(tsv, tmp_path, f"trainer.init_from={tsv}"), capsys)
    assert str(tsv) in line
    assert not (tmp_path / "out").exists()


@NO_CUDA
def test_infer_refuses_cuda_without_cuda_and_bad_batch_size(checkpoint, tsv, tmp_path, capsys):
    for args, message in [(["--device", "cuda"], "--device=cuda: no CUDA device is available"),
                          (["--batch-size", "0"], "--batch-size=0: must be >= 1")]:
        line = error_of(lambda a: run_command(infer.main, a),
                        [str(checkpoint), str(tsv), str(tmp_path / "p.tsv"), *args], capsys)
        assert message in line
    assert not (tmp_path / "p.tsv").exists()

