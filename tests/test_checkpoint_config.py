"""Issue 14, class 3: a checkpoint's config can do no more than build model parts. Its ``model``
section builds only ``nn.Module`` classes declared as parts (uer's part packages, or a prefix the user
trusts), through every command that loads a checkpoint; the rest is data, never resolved or built;
and an alias bomb or an oversized config.yaml / config.json is refused in well under a second.
Each doctored checkpoint is refused with one line (exit 2 through the commands), nothing is
written, and the checkpoint is left byte-identical."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from checks import digest, one_line_error
from omegaconf import OmegaConf

from examples.finetune import build_task_model, compose_recipe
from uer.cli.convert import main as convert_main
from uer.cli.generate import main as generate_main
from uer.cli.pretrain import main as pretrain_main
from uer.cli.soup import main as soup_main
from uer.config import compose_config, resolve
from uer.convert import load_pretrained
from uer.data.tokenizer import Tokenizer
from uer.models.build import build_model
from uer.models.registry import check_parts
from uer.models.untrusted import MAX_NODES
from uer.train.checkpoint import save_checkpoint
from uer.train.config import TrainerConfig
from uer.train.run import resume_point

CONF = Path(__file__).resolve().parents[1] / "conf"
RECIPE = Path(__file__).resolve().parents[1] / "examples" / "classification"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
"""Billion laughs: nine levels of ten aliases, 10**9 strings once expanded, in 400 bytes."""



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A bert_tiny checkpoint with a tokenizer (random weights, no training)."""
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    cfg = compose_config(["+model=bert_tiny", f"model.vocab_size={tokenizer.vocab_size}"])
    path = tmp_path_factory.mktemp("ckpt") / "bert"
    save_checkpoint(path, build_model(resolve(cfg.model)), cfg, tokenizer, None)
    return path


def doctored(checkpoint: Path, tmp_path: Path, change) -> Path:
    """A copy of ``checkpoint`` whose config.yaml is ``change(config)`` (a dict) or, if ``change``
    returns text, that text."""
    copy = tmp_path / "doctored"
    shutil.copytree(checkpoint, copy)
    cfg = OmegaConf.to_container(OmegaConf.load(copy / "config.yaml"))
    out = change(cfg)
    (copy / "config.yaml").write_text(out if isinstance(out, str) else OmegaConf.to_yaml(cfg), encoding="utf-8")
    return copy


def error_of(main, argv: list[str], capsys) -> str:
    """The one ``error:`` line of ``main(argv)``, which must exit 2."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_every_target_the_shipped_model_configs_name_is_a_model_part():
    found = {str(node["_target_"]) for path in CONF.glob("model/**/*.yaml")
             for node in _nodes(OmegaConf.to_container(OmegaConf.load(path)))
             if "_target_" in node and "${" not in str(node["_target_"])}
    assert len(found) > 20 and "uer.layers.MultiHeadAttention" in found
    for target in sorted(found):
        check_parts({"_target_": target})


def _nodes(value):
    if isinstance(value, dict):
        yield value
    for item in (value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()):
        yield from _nodes(item)


@pytest.mark.parametrize("target", ["uer.train.metrics.RunLog", "uer.data.tokenizer.Tokenizer",
                                    "uer.layers.kv_cache.KVCache", "uer.models.model.Model"])
def test_uer_classes_that_are_not_parts_are_refused_even_when_trusted(target):
    one_line_error(lambda: check_parts({"encoder": {"_target_": target}}, ("uer.", "uer.train.")),
                   f"model.encoder._target_={target}", "not a model part")


def test_a_user_part_must_be_a_module():
    one_line_error(lambda: check_parts({"_target_": "collections.OrderedDict"}, ("uer.", "collections.")),
                   "collections.OrderedDict", "not a model part")
    check_parts({"_target_": "torch.nn.Identity"}, ("uer.", "torch.nn."))  # a module the user trusts


def test_a_file_writing_class_in_a_checkpoint_is_built_by_no_command(checkpoint, tmp_path, capsys, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    broken = doctored(checkpoint, tmp_path, lambda c: c["model"].update(
        encoder={"_target_": "uer.train.metrics.RunLog", "output_dir": str(logs)}))
    before = digest(broken)
    needle = "model.encoder._target_=uer.train.metrics.RunLog is uer.train.metrics.RunLog, not a model part"
    assert needle in error_of(convert_main, [str(broken), str(tmp_path / "hf")], capsys)
    assert needle in error_of(generate_main, [str(broken), "--prompt", "x"], capsys)
    assert needle in error_of(soup_main, [str(tmp_path / "soup"), str(broken), str(checkpoint)], capsys)
    monkeypatch.chdir(tmp_path)
    assert needle in error_of(pretrain_main, ["+model=bert_tiny", f"trainer.init_from={broken}",
                                              f"trainer.output_dir={tmp_path / 'out'}",
                                              "trainer.allowed_targets=[uer.train.]"], capsys)
    cfg, model_args = compose_recipe(RECIPE, [f"trainer.init_from={broken}"])  # the fine-tuning recipes
    one_line_error(lambda: build_task_model(cfg, model_args, "seq_cls", 2), needle)
    one_line_error(lambda: load_pretrained(broken, allowed_targets=["uer.train."]), needle)
    assert not list(logs.iterdir()) and digest(broken) == before
    assert not any((tmp_path / name).exists() for name in ("hf", "soup", "out"))


def test_the_rest_of_a_checkpoint_config_is_never_built(checkpoint, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    hostile = {"_target_": "uer.train.metrics.RunLog", "output_dir": str(logs)}
    broken = doctored(checkpoint, tmp_path, lambda c: c.update(
        data={**c["data"], "collator": hostile, "processor": hostile}, trainer={**c["trainer"], "callback": hostile},
        task={"name": "classification", "head": hostile}))
    loaded = load_pretrained(broken)
    assert loaded.config.data.collator._target_ == hostile["_target_"]  # kept as a value
    cfg, model_args = compose_recipe(RECIPE, [f"trainer.init_from={broken}"])
    build_task_model(cfg, model_args, "seq_cls", 2)
    assert not list(logs.iterdir())


@pytest.mark.parametrize("value", ["${oc.env:HOME}", "${now:%Y}", "run-${model.name}"])
def test_an_interpolation_in_a_checkpoint_config_is_refused_unresolved(checkpoint, tmp_path, value):
    broken = doctored(checkpoint, tmp_path, lambda c: c["data"].update(corpus=value))
    before = digest(broken)
    one_line_error(lambda: load_pretrained(broken), "config.yaml: data.corpus is an interpolation", value)
    t = TrainerConfig(output_dir=str(tmp_path / "out"), resume=str(broken))
    one_line_error(lambda: resume_point(t, resolve(OmegaConf.load(checkpoint / "config.yaml")).model),
                   "data.corpus is an interpolation")
    assert digest(broken) == before and not (tmp_path / "out").exists()


def test_an_alias_bomb_is_refused_at_once(checkpoint, tmp_path, capsys):
    broken = doctored(checkpoint, tmp_path, lambda c: OmegaConf.to_yaml(c) + BOMB)
    before = digest(broken)
    start = time.monotonic()
    line = error_of(convert_main, [str(broken), str(tmp_path / "hf")], capsys)
    assert time.monotonic() - start < 2.0
    assert f"config.yaml: expands to more than {MAX_NODES} YAML nodes" in line, line
    assert digest(broken) == before and not (tmp_path / "hf").exists()


def test_an_oversized_config_yaml_is_refused_at_once(checkpoint, tmp_path):
    broken = doctored(checkpoint, tmp_path, lambda c: OmegaConf.to_yaml(c) + "# padding\n" * 5_000_000)
    start = time.monotonic()
    one_line_error(lambda: load_pretrained(broken), "config.yaml: larger than 8 MiB")
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("content, needle", [
    ('{"model_type": "bert", "pad": "' + "x" * 10_000_000 + '"}', "config.json: larger than 8 MiB"),
    ("[" * 100_000 + "]" * 100_000, "config.json: not a readable JSON file"),
    (json.dumps({"model_type": "bert", "labels": [0] * 300_000}), f"more than {MAX_NODES} values"),
    (json.dumps({"model_type": "bert", "note": "${oc.env:HOME}"}), "config.json: note is an interpolation"),
])
def test_a_hostile_hugging_face_config_is_refused_at_once(tmp_path, content, needle):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(content, encoding="utf-8")
    start = time.monotonic()
    one_line_error(lambda: load_pretrained(tmp_path / "hf"), needle)
    assert time.monotonic() - start < 2.0
