"""The command line as a new user meets it (issue 18): Hydra's usual flags anywhere on the line, and
``trainer.resume=auto`` without ``trainer.output_dir`` continuing the latest run of the preset. All
in-process ``main()`` calls or config-level calls: nothing trains."""
from __future__ import annotations

import os

import pytest

from uer.cli.common import split_hydra_flags
from uer.cli.preprocess import main as preprocess_main
from uer.cli.pretrain import main as pretrain_main
from uer.config import compose_config
from uer.errors import UerError
from uer.train.run import continue_latest_run


@pytest.mark.parametrize("argv", [["+model=bert_mini", "--help"], ["-h", "+model=bert_mini"],
                                  ["+model=bert_mini", "trainer.max_steps=3", "-h"]])
def test_help_anywhere_on_the_line(argv, capsys):
    assert pretrain_main(argv) == 0
    out = capsys.readouterr()
    assert "usage: uer-pretrain" in out.out and "bert_mini" in out.out and not out.err


def test_preprocess_help_after_overrides(capsys):
    assert preprocess_main(["data=bert", "--help"]) == 0
    assert "uer-preprocess" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--cfg", "+model=bert_mini", "-p", "model.dim"],
                                  ["+model=bert_mini", "--cfg", "job", "--package=model.dim", "--resolve"]])
def test_cfg_with_hydra_spellings(argv, capsys):
    assert pretrain_main(argv) == 0
    assert capsys.readouterr().out.strip() == "256"


def test_info_after_the_preset(capsys):
    assert pretrain_main(["+model=bert_tiny", "--info", "model.vocab_size=100"]) == 0
    assert "parameters" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("argv, words", [(["+model=bert_mini", "--multirun"], ["--multirun", "unknown option"]),
                                         (["+model=bert_mini", "--cfg", "hydra"], ["--cfg hydra", "--cfg job"]),
                                         (["+model=bert_mini", "--cfg", "-p", "nope"], ["--package nope"])])
def test_other_flags_are_one_line_errors(argv, words, capsys):
    assert pretrain_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and all(w in err for w in words), err


def test_split_keeps_overrides_in_order():
    flags, rest = split_hydra_flags(["a=1", "--cfg", "job", "b=2", "--resolve", "~c"])
    assert rest == ["a=1", "b=2", "~c"] and flags.cfg and flags.resolve and not flags.help
    with pytest.raises(UerError, match="--package needs a key"):
        split_hydra_flags(["--cfg", "--package"])


def _run_with_checkpoint(folder, mtime):
    step = folder / "checkpoints" / "step_0000002"
    step.mkdir(parents=True)
    os.utime(step, (mtime, mtime))


def test_resume_auto_continues_the_latest_run_of_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "outputs" / "bert_tiny"
    _run_with_checkpoint(runs / "20260101-000000", 1_000)
    _run_with_checkpoint(runs / "20260102-000000", 3_000)  # saved last
    _run_with_checkpoint(runs / "mine", 2_000)
    (runs / "20260103-000000").mkdir()  # started, crashed before its first checkpoint
    cfg = compose_config(["+model=bert_tiny", "trainer.resume=auto"])
    continue_latest_run(cfg)
    assert cfg.trainer.output_dir == str(runs / "20260102-000000").removeprefix(f"{tmp_path}/")


def test_resume_auto_leaves_a_given_output_dir_or_starts_fresh(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    _run_with_checkpoint(tmp_path / "outputs" / "bert_tiny" / "20260101-000000", 1_000)
    given = compose_config(["+model=bert_tiny", "trainer.resume=auto", "trainer.output_dir=elsewhere"])
    continue_latest_run(given)
    assert given.trainer.output_dir == "elsewhere"
    fresh = compose_config(["+model=bert_mini", "trainer.resume=auto"])  # no bert_mini run yet
    with caplog.at_level("INFO", logger="uer"):
        continue_latest_run(fresh)
    assert str(fresh.trainer.output_dir).startswith("outputs/bert_mini/")
    assert "starting fresh" in caplog.text and "trainer.output_dir=" in caplog.text
