"""The commands as a user runs them (``python -m uer.cli.pretrain`` / ``uer.cli.preprocess``):
a tiny run's outputs, training from a preprocessed dataset, and bad input — exit status 2, a
one-line ``error:`` naming the file or key, and no output directory left behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from checks import digest

from uer.cli.common import run_command
from uer.cli.pretrain import main as pretrain_main
from uer.config import presets
from uer.errors import UerError

KJV = Path(__file__).resolve().parents[1] / "uer" / "data" / "default" / "kjv.txt"
TINY = ["trainer.max_steps=2", "data.batch_size=4", "data.seq_length=32", "trainer.progress=false",
        "data.num_proc=1", "data.eval_samples=8"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The user's working directory: ``corpus.txt`` (first 1500 lines of the KJV), the same with one
    Latin-1 line (``latin1.txt``), an empty file, a folder, and a dataset cache."""
    root = tmp_path_factory.mktemp("cli")
    text = "\n".join(KJV.read_text(encoding="utf-8").splitlines()[:1500]) + "\n"
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    cut = text.index("\n", 2000) + 1
    (root / "latin1.txt").write_bytes((text[:cut] + "caf\xe9 au lait\n" + text[cut:]).encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    (root / "folder").mkdir()
    return root


def run(workdir: Path, command: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m uer.cli.<command> *args`` in ``cwd`` (default ``workdir``), offline, one thread."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UER_CACHE": str(workdir / "cache"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", f"uer.cli.{command}", *args], cwd=cwd or workdir, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def pretrain(workdir: Path, *args: str, model: str | None = "+model=bert_tiny", cwd: Path | None = None):
    return run(workdir, "pretrain", *([model] if model else []), *TINY, *args, cwd=cwd)


def pretrain_here(workdir: Path, monkeypatch, capsys, *args: str, model: str | None = "+model=bert_tiny"):
    """What :func:`pretrain` does, in this process: ``uer.cli.pretrain.main`` run in ``workdir``
    (the bad-input cases fail before training; a subprocess each would cost seconds of imports)."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("UER_CACHE", str(workdir / "cache"))
    argv = [*([model] if model else []), *TINY, *args]
    code = pretrain_main(argv)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a failed command ends with (asserting exit status 2, no traceback)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and sum(line.startswith("error") for line in lines) == 1
    return lines[-1]



RUN = ["data.corpus=latin1.txt", "data.invalid_utf8=skip", "trainer.output_dir=run"]


@pytest.fixture(scope="module")
def trained(workdir) -> subprocess.CompletedProcess:
    """One successful tiny run, shared by the tests that inspect it. Its corpus has a line that is
    not UTF-8, which ``data.invalid_utf8=skip`` drops (the default, ``fail``, is tested below)."""
    done = pretrain(workdir, *RUN)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_invalid_utf8_lines_can_be_skipped(trained):
    assert "skipped 1 lines that are not valid UTF-8" in trained.stderr


def test_tiny_run_writes_metrics_checkpoint_and_tensorboard(workdir, trained):
    trained = workdir / "run"
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train and train[-1]["step"] == 2
    assert {"loss", "mlm/acc", "sp/acc", "tokens_per_s", "mfu", "lr"} <= train[-1].keys()
    assert train[-1]["loss"] > 0 and train[-1]["tokens_per_s"] > 0 and 0 < train[-1]["mfu"] < 1
    assert any(r["split"] == "eval" for r in records)
    (checkpoint,) = (trained / "checkpoints").iterdir()
    assert checkpoint.name == "step_0000002"
    assert {"model.safetensors", "config.yaml", "tokenizer.json"} <= {p.name for p in checkpoint.iterdir()}
    assert (checkpoint / "state").is_dir() and (checkpoint / "state" / "trainer.json").is_file()
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))


def test_a_multi_line_message_is_printed_as_one_line(capsys):
    def job(argv):
        raise UerError("tokenizer x.json: not valid\n  (line 3)")

    assert run_command(job, []) == 2
    assert capsys.readouterr().err == "error: tokenizer x.json: not valid (line 3)\n"


def test_help_lists_the_presets(workdir):
    done = run(workdir, "pretrain", "--help")
    assert done.returncode == 0 and "+model=<preset>" in done.stdout
    assert all(name in done.stdout for name in presets())


BAD_INPUTS = {
    "missing corpus": (["data.corpus=missing.txt"], ["missing.txt", "not found"]),
    "directory corpus": (["data.corpus=folder"], ["folder", "directory"]),
    "empty corpus": (["data.corpus=empty.txt"], ["empty.txt", "empty"]),
    "invalid utf-8": (["data.corpus=latin1.txt"], ["latin1.txt", "line 19", "UTF-8", "data.invalid_utf8=skip"]),
    "unknown trainer key": (["trainer.max_stepz=3"], ["trainer.max_stepz", "valid keys", "max_steps"]),
    "unknown data key": (["data.seq_lenght=32"], ["data.seq_lenght", "seq_length"]),
    "unknown optim key": (["optim.lrr=1"], ["optim.lrr", "valid keys"]),
    "zero batch size": (["data.batch_size=0"], ["data.batch_size=0"]),
    "longer than the positions": (["data.seq_length=600"], ["data.seq_length=600", "model.max_seq_length=512"]),
    "mask probability": (["data.mask_prob=1.5"], ["data.mask_prob=1.5"]),
    "wrong type": (["trainer.max_steps=abc"], ["trainer.max_steps", "abc"]),
    "vocab smaller than tokenizer": (["model.vocab_size=10"], ["model.vocab_size=10", "8000"]),
    "missing tokenizer": (["data.tokenizer=/nope/vocab.txt"], ["/nope/vocab.txt"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_output(workdir, case, monkeypatch, capsys):
    overrides, needles = BAD_INPUTS[case]
    out = workdir / f"out-{case.replace(' ', '-')}"
    corpus = [] if any(o.startswith("data.corpus=") for o in overrides) else ["data.corpus=corpus.txt"]
    done = pretrain_here(workdir, monkeypatch, capsys, *corpus, *overrides, f"trainer.output_dir={out.name}")
    line = error_line(done)
    assert all(needle in line for needle in needles), line
    assert not out.exists() and not (workdir / "outputs").exists()


def test_bad_input_through_the_real_command(workdir):
    """The same contract from ``python -m uer.cli.pretrain`` in a process of its own."""
    line = error_line(pretrain(workdir, "data.corpus=missing.txt", "trainer.output_dir=out-command"))
    assert "missing.txt" in line and "not found" in line, line
    assert not (workdir / "out-command").exists()


@pytest.mark.parametrize("model", [None, "model=bert_base"])
def test_missing_or_unadded_model_lists_the_presets(workdir, model, monkeypatch, capsys):
    out = workdir / "out-no-model"
    line = error_line(pretrain_here(workdir, monkeypatch, capsys, "data.corpus=corpus.txt",
                                    f"trainer.output_dir={out.name}", model=model))
    assert "+model" in line and all(name in line for name in presets()), line
    assert not out.exists() and not (workdir / "outputs").exists()


def test_output_dir_that_is_a_file(workdir, monkeypatch, capsys):
    (workdir / "taken").write_text("not a directory")
    line = error_line(pretrain_here(workdir, monkeypatch, capsys, "data.corpus=corpus.txt", "trainer.output_dir=taken"))
    assert "trainer.output_dir=taken" in line and "not a directory" in line, line
    assert (workdir / "taken").read_text() == "not a directory"


def test_output_dir_holding_a_run_is_left_untouched(workdir, trained, monkeypatch, capsys):
    before = digest(workdir / "run")
    line = error_line(pretrain_here(workdir, monkeypatch, capsys, *RUN))
    assert "output dir run " in line and "trainer.resume=auto" in line, line
    assert digest(workdir / "run") == before


@pytest.mark.slow  # two real commands (~11 s); the quick suite runs each command for real elsewhere
def test_preprocess_once_then_train_from_the_dataset(workdir):
    """In a fresh directory, as a user would: preprocess, then train from the dataset with the default
    ``trainer.output_dir`` (``outputs/<model name>/<time>``)."""
    here = workdir / "second"
    here.mkdir()
    done = run(workdir, "preprocess", "data.corpus=../corpus.txt", "data.seq_length=32", "data.num_proc=1",
               "output=dataset", cwd=here)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dataset: dataset" in done.stdout and (here / "dataset" / "uer_dataset.json").is_file()
    done = pretrain(workdir, "data.dataset=dataset", cwd=here)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "preprocess" not in done.stderr  # the corpus was not read again
    (out,) = (here / "outputs" / "bert_tiny").iterdir()
    assert (out / "checkpoints" / "step_0000002" / "model.safetensors").is_file()
