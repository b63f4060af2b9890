"""Issue 14, class 5 (the preprocessing cache has integrity): shards and dataset files carry a size
and checksum checked on use; a damaged cached shard or dataset is built again with a warning (a
damaged ``data.dataset`` is one line); token ids outside the vocabulary are one line before training;
two builds of the same corpus at once both succeed; SIGTERM to ``uer-preprocess`` leaves no worker
process and a later run no stray ``.partial`` directory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from checks import one_line_error
from datasets import Dataset

from uer.cli.pretrain import main as pretrain_main
from uer.data.collators import shipped_data_config
from uer.preprocess.build import META_FILE, build_dataset, load_dataset_dir, read_meta
from uer.preprocess.integrity import check_token_ids, tree_records
from uer.preprocess.registry import options_from_config

KJV = Path(__file__).resolve().parents[1] / "uer" / "data" / "default" / "kjv.txt"
CHAPTERS = KJV.read_text(encoding="utf-8").split("\n\n")


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Path:
    """Twelve chapters in shards of ~6 kB (several shards), with a private cache."""
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("uer.preprocess.corpus.SHARD_BYTES", 6_000)
    path = tmp_path / "kjv.txt"
    path.write_text("\n\n".join(CHAPTERS[:12]) + "\n", encoding="utf-8")
    return path


def options(corpus: Path, **kwargs):
    return options_from_config(shipped_data_config("mlm", corpus=str(corpus), seq_length=32, num_proc=1, **kwargs))


def rows(directory: Path) -> list[dict]:
    return load_dataset_dir(directory)[0].to_list()


def flip_byte(path: Path, offset: int = -20) -> None:
    """Corrupt ``path`` in place, keeping its size (a bit flip on disk)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def test_damaged_shards_are_written_again(corpus, tmp_path, monkeypatch, caplog):
    import uer.preprocess.shards as shards_module

    reference = rows(build_dataset(options(corpus), output_dir=tmp_path / "reference"))
    original, written = shards_module.write_shard, []

    def stop_after_three(*args):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(args[1].index)
        return original(*args)

    monkeypatch.setattr(shards_module, "write_shard", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(options(corpus), output_dir=tmp_path / "out")
    (work,) = [p for p in (tmp_path / "cache" / "shards").iterdir() if p.is_dir()]
    truncate(work / "00000.arrow")
    flip_byte(work / "00001.arrow")
    written.clear()
    monkeypatch.setattr(shards_module, "write_shard", lambda *a: written.append(a[1].index) or original(*a))
    caplog.set_level("WARNING")
    out = build_dataset(options(corpus), output_dir=tmp_path / "out")
    assert "00000.arrow is damaged (00000.arrow has" in caplog.text
    assert "00001.arrow is damaged (00001.arrow does not match its checksum); writing it again" in caplog.text
    assert written[:2] == [0, 1] and 2 not in written  # the good shard 2 was kept
    assert rows(out) == reference and not work.exists()


def test_a_damaged_cached_dataset_is_built_again(corpus, tmp_path, caplog):
    first = build_dataset(options(corpus))
    reference = rows(first)
    caplog.set_level("WARNING")
    for damage, needle in ((truncate, "has"), (flip_byte, "does not match its checksum")):
        damage(first / "data-00000-of-00001.arrow")
        caplog.clear()
        assert build_dataset(options(corpus)) == first
        assert f"cached dataset {first} is damaged (data-00000-of-00001.arrow {needle}" in caplog.text
        assert rows(first) == reference
    (first / META_FILE).write_text('{"key": ')  # a torn metadata file
    assert build_dataset(options(corpus)) == first and rows(first) == reference
    assert not list(first.parent.glob(".*"))  # no staging or retired directory left


def test_a_damaged_dataset_given_by_the_user_is_one_line(corpus, tmp_path):
    out = build_dataset(options(corpus), output_dir=tmp_path / "mine")
    before = (out / META_FILE).read_bytes()
    flip_byte(out / "tokenizer" / "tokenizer.json", 10)
    one_line_error(lambda: load_dataset_dir(out), f"dataset {out}: damaged", "tokenizer.json does not match")
    (out / "data-00000-of-00001.arrow").unlink()
    one_line_error(lambda: load_dataset_dir(out), "data-00000-of-00001.arrow is missing")
    assert (out / META_FILE).read_bytes() == before  # reported, never rewritten
    (out / "zero").symlink_to("/dev/zero")  # hostile records must not make the check read forever
    os.mkfifo(out / "pipe")
    for files, needle in (({"zero": {"size": 0, "sha256": ""}}, "zero lies outside the dataset"),
                          ({"pipe": {"size": 0, "sha256": ""}}, "pipe is not a regular file"),
                          ({"../kjv.txt": {"size": 1, "sha256": ""}}, "../kjv.txt lies outside the dataset")):
        (out / META_FILE).write_text(json.dumps({**json.loads(before), "files": files}))
        one_line_error(lambda: load_dataset_dir(out), needle)


def test_token_ids_outside_the_vocabulary_stop_before_training(corpus, tmp_path, capsys):
    built = build_dataset(options(corpus), output_dir=tmp_path / "built")
    table = load_dataset_dir(built)[0].data.table
    ids = table.column("input_ids").to_pylist()
    ids[5][3] = 31_000  # the id of a bigger vocabulary than the 8000 of kjv-wordpiece
    doctored = tmp_path / "doctored"
    Dataset(table.set_column(0, "input_ids", pa.array(ids, table.schema.field("input_ids").type))).save_to_disk(
        str(doctored))
    (doctored / "tokenizer").mkdir()
    for name in os.listdir(built / "tokenizer"):
        (doctored / "tokenizer" / name).write_bytes((built / "tokenizer" / name).read_bytes())
    meta = {**read_meta(built), "files": tree_records(doctored)}  # consistent checksums: only the ids are wrong
    (doctored / META_FILE).write_text(json.dumps(meta))
    code = pretrain_main(["+model=bert_tiny", "model/target=mlm", "data=mlm", f"data.dataset={doctored}",
                          f"trainer.output_dir={tmp_path / 'run'}", "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and lines == [f"error: dataset {doctored}: input_ids holds token id 31000, outside "
                                   "[0, 8000) of model.vocab_size=8000; was it built with another tokenizer?"]
    assert not (tmp_path / "run").exists()


def test_labels_may_hold_the_ignore_index_but_no_other_negative_id():
    limits = {"input_ids": ("model.vocab_size", 10), "labels": ("model.tgt_vocab_size", 5)}
    check_token_ids(pa.table({"input_ids": [[0, 9]], "labels": [[-100, 4]]}), limits, "d")
    for table, needle in ((pa.table({"input_ids": [[0, 1]], "labels": [[-1, 2]]}), "labels holds token id -1"),
                          (pa.table({"input_ids": [[-3, 1]], "labels": [[1]]}), "input_ids holds token id -3"),
                          (pa.table({"input_ids": [[1]], "labels": [[5]]}), "outside [0, 5) of model.tgt_vocab_size")):
        one_line_error(lambda: check_token_ids(table, limits, "d"), "dataset d: ", needle)


# --- real processes ------------------------------------------------------------------------------

def preprocess(corpus: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "UER_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "uer.cli.preprocess", "data=mlm", f"data.corpus={corpus}",
                             "data.seq_length=64", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def big_corpus(tmp_path: Path, copies: int) -> Path:
    path = tmp_path / "big.txt"
    path.write_bytes(KJV.read_bytes() * copies)
    return path


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_two_builds_of_the_same_corpus_at_once_both_succeed(tmp_path):
    corpus, cache = big_corpus(tmp_path, 2), tmp_path / "cache"
    runs = [preprocess(corpus, cache, "data.num_proc=1") for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err[-3000:]
    assert any("waiting for process" in err for _, err in results)  # they did overlap
    paths = {out.splitlines()[0] for out, _ in results}
    (path,) = paths  # the same dataset
    assert len(load_dataset_dir(Path(path.removeprefix("dataset: ")))[0]) and not list((cache / "shards").iterdir())
    assert not list((cache / "datasets").glob(".*"))


@pytest.mark.slow
def test_sigterm_leaves_no_workers_and_a_later_run_no_partial_dirs(tmp_path):
    corpus, cache = big_corpus(tmp_path, 2), tmp_path / "cache"
    run = preprocess(corpus, cache, "data.num_proc=2")
    deadline = time.monotonic() + 120
    while len(children_of(run.pid)) < 3 or not list((cache / "shards").glob("*/*.json")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.05)
    workers = children_of(run.pid)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == ("error: stopped by SIGTERM; the same command continues from the "
                                            "finished shards")
    deadline = time.monotonic() + 10
    while [pid for pid in workers if alive(pid)]:  # workers and resource tracker, wherever reparented
        assert time.monotonic() < deadline, f"orphaned: {[pid for pid in workers if alive(pid)]}"
        time.sleep(0.05)
    assert not list((cache / "datasets").glob(".*"))  # its staging directory removed on the way out

    killed = preprocess(corpus, cache, "data.num_proc=1")  # SIGKILL cannot clean up: the next run does
    while not list((cache / "datasets").glob(".*.partial")):
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        time.sleep(0.05)
    killed.kill()
    killed.communicate()
    again = preprocess(corpus, cache, "data.num_proc=2")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert not list((cache / "datasets").glob(".*")) and not list((cache / "shards").iterdir())
    assert len(load_dataset_dir(Path(out.splitlines()[0].removeprefix("dataset: ")))[0])
