"""Bad input to every command (uer-preprocess, uer-pretrain, uer-convert): a one-line UerError naming
the file or key and the problem, and nothing written or lost — no output directory, no partial cache
entry, an existing run or checkpoint untouched. Most cases call the library (fast); a few run the
commands to check exit status 2, one ``error:`` line and no traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checks import digest, one_line_error
from omegaconf import OmegaConf
from uer.preprocess.build import build_dataset, load_dataset_dir
from uer.preprocess.registry import options_from_config

from uer.cli.pretrain import main as pretrain_main
from uer.config import compose_config
from uer.data.collators import shipped_data_config
from uer.models.build import build_model, check_targets
from uer.train.checkpoint import load_config
from uer.train.run import prepare, pretrain

FAST = ["trainer.progress=false", "trainer.eval_every=0", "data.eval_samples=4", "data.num_proc=1",
        "data.seq_length=32", "data.batch_size=4", "trainer.max_steps=2"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "cache"))



def cache_entries(tmp_path: Path) -> list[str]:
    """What the dataset cache holds (finished datasets and shard work dirs)."""
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").glob("*/*"))


def command(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UER_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"uer.cli.{name}", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, done.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory):
    """A finished 2-step bert_tiny run: (its overrides, its checkpoint)."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["+model=bert_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={out}", *FAST]
    pretrain(compose_config(args))
    (checkpoint,) = (out / "checkpoints").iterdir()
    return args, checkpoint


def broken_copy(checkpoint: Path, tmp_path: Path, change) -> Path:
    """A copy of ``checkpoint`` with ``change(copy)`` applied."""
    copy = tmp_path / "broken" / checkpoint.name
    shutil.copytree(checkpoint, copy)
    change(copy)
    return copy


# --- corpora -------------------------------------------------------------------------------------

def test_unreadable_corpus(tmp_path, small_corpus, monkeypatch):
    import uer.preprocess.corpus as corpus_module

    corpus = tmp_path / "locked.txt"
    shutil.copy(small_corpus, corpus)
    if os.geteuid() != 0:  # root reads a chmod 000 file anyway
        corpus.chmod(0)
    else:
        def refuse(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(corpus_module, "open", refuse, raising=False)
    options = options_from_config(shipped_data_config("mlm", corpus=str(corpus), num_proc=1))
    one_line_error(lambda: build_dataset(options, output_dir=tmp_path / "out"), str(corpus), "cannot read",
                   "Permission denied")
    assert not (tmp_path / "out").exists() and cache_entries(tmp_path) == []


@pytest.mark.parametrize("case", ["directory", "empty"])
def test_preprocess_command_on_a_bad_corpus(tmp_path, case):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    corpus, needle = {"directory": ("folder", "is a directory"), "empty": ("empty.txt", "file is empty")}[case]
    line = error_line(command(tmp_path, "preprocess", f"data.corpus={corpus}", "output=out"))
    assert corpus in line and needle in line, line
    assert not (tmp_path / "out").exists() and cache_entries(tmp_path) == []


def test_invalid_utf8_fails_naming_the_line_or_is_skipped_and_reported_at_the_end(tmp_path):
    (tmp_path / "mixed.txt").write_bytes(b"In the beginning.\n\xff\xfe bad\nAnd the earth.\ncaf\xe9\nThe end.\n")
    line = error_line(command(tmp_path, "preprocess", "data=mlm", "data.corpus=mixed.txt", "output=out"))
    assert "mixed.txt" in line and "line 2" in line and "data.invalid_utf8=skip" in line, line
    assert not (tmp_path / "out").exists()
    done = command(tmp_path, "preprocess", "data=mlm", "data.corpus=mixed.txt", "data.invalid_utf8=skip",
                   "data.num_proc=1", "output=out")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "skipped lines (not UTF-8): 2"
    assert load_dataset_dir(tmp_path / "out")[1]["source"]["skipped_invalid_lines"] == 2


def test_image_that_does_not_decode(tmp_path):
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    options = options_from_config(shipped_data_config("image", corpus=str(tmp_path / "images"), num_proc=1))
    one_line_error(lambda: build_dataset(options, output_dir=tmp_path / "out"), "broken.png", "cannot be decoded")
    assert not (tmp_path / "out").exists() and cache_entries(tmp_path) == []


# --- paths of the wrong kind and configuration ---------------------------------------------------

def test_a_directory_or_a_file_where_the_other_is_expected(tmp_path, run):
    from uer.convert import convert
    from uer.data.tokenizer import Tokenizer

    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("text")
    one_line_error(lambda: Tokenizer.load(str(tmp_path / "folder")), "folder", "no tokenizer.json")
    one_line_error(lambda: load_dataset_dir(tmp_path / "file.txt"), "file.txt", "not a directory")
    one_line_error(lambda: convert(tmp_path / "file.txt", tmp_path / "hf"), "file.txt", "expected a model directory")
    args, _ = run
    one_line_error(lambda: prepare(compose_config(args + [f"trainer.init_from={tmp_path / 'file.txt'}"])),
                   "file.txt")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("override,needles", [
    ("trainer.max_steps=abc", ["trainer.max_steps", "abc"]),
    ("optim.lr=fast", ["optim.lr", "fast"]),
    ("trainer.max_stepz=3", ["unknown key trainer.max_stepz", "max_steps"]),
    ("data.seq_length=abc", ["data.seq_length", "abc"]),
    ("data.invalid_utf8=ignore", ["data.invalid_utf8", "skip"]),
])
def test_wrong_config_types_and_unknown_keys(tmp_path, small_corpus, override, needles):
    out = tmp_path / "out"
    args = ["+model=bert_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={out}", *FAST, override]
    one_line_error(lambda: prepare(compose_config(args)), *needles)
    assert not out.exists() and not [e for e in cache_entries(tmp_path) if "shards" in e]


# --- runs and checkpoints ------------------------------------------------------------------------

def test_output_dir_holding_another_run_is_left_untouched(run):
    args, checkpoint = run
    before = digest(checkpoint.parent.parent)
    one_line_error(lambda: prepare(compose_config(args)), "holds another run", "trainer.resume=auto")
    one_line_error(lambda: prepare(compose_config(args + ["trainer.resume=auto", "model.num_layers=3"])),
                   "another model config", "model.num_layers")
    assert digest(checkpoint.parent.parent) == before


def test_init_from_a_checkpoint_of_another_model(tmp_path, run, small_corpus):
    _, checkpoint = run
    args = ["+model=gpt2_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={tmp_path / 'out'}", *FAST,
            f"trainer.init_from={checkpoint}"]
    one_line_error(lambda: prepare(compose_config(args)), f"trainer.init_from={checkpoint}", "another model config")
    assert not (tmp_path / "out").exists()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("how", ["init_from", "resume"])
def test_corrupt_or_truncated_weights(tmp_path, run, how):
    args, checkpoint = run
    broken = broken_copy(checkpoint, tmp_path, lambda c: truncate(c / "model.safetensors"))
    out = tmp_path / "out"
    key = "trainer.init_from" if how == "init_from" else "trainer.resume"
    one_line_error(lambda: prepare(compose_config(args + [f"trainer.output_dir={out}", f"{key}={broken}"])),
                   str(broken / "model.safetensors"), "not a readable safetensors file")
    assert not out.exists() and digest(broken) == digest(broken_copy(checkpoint, tmp_path / "again",
                                                                    lambda c: truncate(c / "model.safetensors")))


def test_truncated_training_state(tmp_path, run):
    args, checkpoint = run
    broken = broken_copy(checkpoint, tmp_path, lambda c: truncate(c / "state" / "optimizer.pt"))
    one_line_error(lambda: prepare(compose_config(args + [f"trainer.output_dir={tmp_path / 'out'}",
                                                          f"trainer.resume={broken}"])),
                   str(broken), "no resumable training state")
    assert not (tmp_path / "out").exists()


class Hostile:
    """Unpickling this runs a shell command: what a malicious checkpoint would hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_training_state_is_never_unpickled(tmp_path, run, capsys):
    args, checkpoint = run
    marker = tmp_path / "pwned"
    broken = broken_copy(checkpoint, tmp_path, lambda c: torch.save({"state": Hostile(marker)},
                                                                    c / "state" / "optimizer.pt"))
    before = digest(broken)
    status = pretrain_main([*args, f"trainer.output_dir={tmp_path / 'out'}", f"trainer.resume={broken}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    line = lines[0]
    assert str(broken) in line and "refusing to load it" in line, line
    assert not marker.exists() and not (tmp_path / "out").exists() and digest(broken) == before


def hostile_config(copy: Path, target: str, marker: Path) -> None:
    cfg = OmegaConf.load(copy / "config.yaml")
    cfg.model.encoder = {"_target_": target, "_args_": [f"touch {marker}"]}
    OmegaConf.save(cfg, copy / "config.yaml")


@pytest.mark.parametrize("target", ["os.system", "uer.preprocess.build.os.system"])
def test_hostile_target_in_a_checkpoint_config_is_refused(tmp_path, run, target):
    args, checkpoint = run
    marker = tmp_path / "pwned"
    broken = broken_copy(checkpoint, tmp_path, lambda c: hostile_config(c, target, marker))
    if target == "os.system":  # one command run is enough: refused before anything is built
        line = error_line(command(tmp_path, "convert", str(broken), str(tmp_path / "hf")))
        assert f"model.encoder._target_={target}" in line and "allowed packages" in line, line
    one_line_error(lambda: build_model(load_config(broken).model), f"model.encoder._target_={target}",
                   "allowed packages")
    for key in ("trainer.init_from", "trainer.resume"):
        one_line_error(lambda: prepare(compose_config(args + [f"trainer.output_dir={tmp_path / 'out'}",
                                                              f"{key}={broken}"])), target)
    assert not marker.exists() and not (tmp_path / "hf").exists() and not (tmp_path / "out").exists()


def test_user_given_targets_need_trainer_allowed_targets(tmp_path, small_corpus):
    args = ["+model=bert_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={tmp_path / 'out'}", *FAST]
    one_line_error(lambda: prepare(compose_config(args + ["model.encoder._target_=os.system"])),
                   "model.encoder._target_=os.system", "trainer.allowed_targets")
    one_line_error(lambda: prepare(compose_config(args + ["model.encoder._target_=os.system",
                                                          "trainer.allowed_targets=[os.]"])),
                   "os.system", "not a class")
    plugin = OmegaConf.create({"encoder": {"_target_": "torch.nn.Identity"}})
    one_line_error(lambda: check_targets(plugin), "torch.nn.Identity", "allowed packages")
    check_targets(plugin, ("uer.", "torch.nn."))  # a prefix the user trusts
    assert not (tmp_path / "out").exists()


def test_unknown_processor_key_lists_the_valid_ones():
    one_line_error(lambda: options_from_config(shipped_data_config("mlm", corpus_fromat="lines")),
                   "unknown key data.corpus_fromat", "corpus_format")
