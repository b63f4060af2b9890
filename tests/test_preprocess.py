"""The preprocessing stage: corpus validation and shards, the five processors, the cached build, the CLI."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.preprocess.build import META_FILE, build_dataset, load_dataset_dir, read_meta
from uer.preprocess.corpus import default_corpus, iter_documents, open_corpus
from uer.preprocess.registry import PROCESSORS, options_from_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHAPTERS = default_corpus().read_text(encoding="utf-8").split("\n\n")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def kjv(tmp_path: Path, chapters: int, name: str = "kjv.txt", newline: str = "\n") -> Path:
    """The first ``chapters`` chapters of the shipped KJV (documents format) as a file."""
    path = tmp_path / name
    path.write_bytes(("\n\n".join(CHAPTERS[:chapters]) + "\n").replace("\n", newline).encode())
    return path


def options(name: str, corpus, **kwargs):
    return PROCESSORS[name](processor=name, corpus=None if corpus is None else str(corpus),
                            **{"num_proc": 1, **kwargs})


def one_line_error(call, *needles: str) -> str:
    with pytest.raises(UerError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(needle in message for needle in needles), message
    return message


# --- corpus --------------------------------------------------------------------------------------

def test_documents_format_shards_tile_the_file_at_document_boundaries(tmp_path):
    path = kjv(tmp_path, 30)
    corpus = open_corpus(str(path), shard_bytes=8_000)
    assert corpus.format == "documents" and len(corpus.shards) > 5
    assert corpus.shards[0].start == 0 and corpus.shards[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(corpus.shards, corpus.shards[1:]))
    sharded = [doc for shard in corpus.shards for doc in iter_documents(shard)]
    assert sharded == [chapter.split("\n") for chapter in CHAPTERS[:30]]


def test_lines_format_crlf_and_default_corpus(tmp_path):
    lines = kjv(tmp_path, 3).read_text().replace("\n\n", "\n")
    path = tmp_path / "lines.txt"
    path.write_bytes(lines.replace("\n", "\r\n").encode())
    corpus = open_corpus(str(path))
    assert corpus.format == "lines"
    assert [doc for s in corpus.shards for doc in iter_documents(s)] == [[line] for line in lines.split("\n") if line]
    crlf = open_corpus(str(kjv(tmp_path, 3, "crlf.txt", newline="\r\n")))
    assert crlf.format == "documents"
    assert list(iter_documents(crlf.shards[0])) == [c.split("\n") for c in CHAPTERS[:3]]
    default = open_corpus(None)
    assert default.files == [default_corpus()] and default.format == "documents"


def test_invalid_utf8_fails_naming_file_and_line_or_is_skipped_and_counted(tmp_path, wordpiece):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"first line\n\xff\xfe broken\nlast line\n")
    one_line_error(lambda: open_corpus(str(path)), str(path), "line 2", "invalid UTF-8")
    corpus = open_corpus(str(path), invalid_utf8="skip")
    assert corpus.stats["skipped_invalid_lines"] == 1
    assert list(iter_documents(corpus.shards[0])) == [["first line"], ["last line"]]
    meta = read_meta(build_dataset(options("mlm", path, seq_length=8, invalid_utf8="skip"), wordpiece))
    assert meta["source"]["skipped_invalid_lines"] == 1
    assert meta["num_tokens"] == sum(map(len, wordpiece.encode_batch(["first line", "last line"]))) + 3


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "blank", "invalid", "no-match"])
def test_bad_corpus_is_one_line_error_and_nothing_is_written(tmp_path, case, wordpiece):
    corpus = {"missing": tmp_path / "missing.txt", "directory": tmp_path / "folder",
              "empty": tmp_path / "empty.txt", "blank": tmp_path / "blank.txt",
              "invalid": tmp_path / "invalid.txt", "no-match": tmp_path / "nothing*.txt"}[case]
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n  \r\n\n")
    (tmp_path / "invalid.txt").write_bytes(b"ok\n\xc3\x28\n")
    out = tmp_path / "out"
    one_line_error(lambda: build_dataset(options("mlm", corpus), wordpiece, out), str(corpus))
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_unknown_and_ignored_config_keys():
    one_line_error(lambda: options_from_config({"processor": "bert", "seq_lenght": 64}),
                   "unknown key data.seq_lenght", "valid keys:", "seq_length")
    one_line_error(lambda: options_from_config({"processor": "bret"}), "data.processor", "bert")
    one_line_error(lambda: options_from_config({"processor": "bert", "seq_length": 4}), "data.seq_length")
    image = options_from_config(OmegaConf.create(
        {"processor": "image", "corpus": None, "image_size": "${model.image_size}", "batch_size": 8}))
    assert type(image).__name__ == "ImageProcessor" and image.corpus is None


# --- sentence pairs ------------------------------------------------------------------------------

def synthetic_documents(count: int) -> tuple[list, dict[int, int]]:
    """Documents of 1-8 sentences of 1-20 tokens; every token id (>= 1000) is unique and increasing."""
    rng, documents, owner, next_id = random.Random(7), [], {}, 1000
    for index in range(count):
        document = []
        for _ in range(rng.randint(1, 8)):
            length = rng.randint(1, 20)
            document.append(list(range(next_id, next_id + length)))
            owner.update({i: index for i in range(next_id, next_id + length)})
            next_id += length
        documents.append(document)
    return documents, owner


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_sentence_pairs_follow_their_definition(name, wordpiece):
    documents, owner = synthetic_documents(500)
    processor = options(name, None, seq_length=64)
    budget, cls, sep = 61, wordpiece.cls_token_id, wordpiece.sep_token_id
    rows = list(processor.instances(documents, random.Random(0), wordpiece))
    for row in rows:
        ids = row["input_ids"]
        assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 2 and len(ids) <= 64
        a, b = ids[1:ids.index(sep)], ids[ids.index(sep) + 1:-1]
        assert a and b and row["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        for side in (a, b):  # each side is one stretch of text of one document
            assert side == list(range(side[0], side[0] + len(side))) and owner[side[0]] == owner[side[-1]]
        truncated = len(a) + len(b) == budget
        label = row["next_sentence_label"]
        if name == "bert" and label == 1:
            assert owner[b[0]] != owner[a[0]]
        elif label == 0:  # the true continuation: B follows A in the same document
            assert owner[a[0]] == owner[b[0]] and (b[0] == a[-1] + 1 or (truncated and b[0] > a[-1]))
        else:  # SOP swapped: the halves of a true pair, in reverse order
            assert owner[a[0]] == owner[b[0]] and (a[0] == b[-1] + 1 or (truncated and a[0] > b[-1]))
    assert len(rows) > 500 and 0.4 < np.mean([r["next_sentence_label"] for r in rows]) < 0.6


def test_bert_dataset_on_the_default_corpus(tmp_path, wordpiece):
    path = build_dataset(options("bert", kjv(tmp_path, 60), seq_length=64), wordpiece)
    dataset, meta, tokenizer = load_dataset_dir(path)
    assert meta["processor"] == "bert" and meta["source"]["format"] == "documents"
    assert tokenizer.fingerprint() == wordpiece.fingerprint() and len(dataset) == meta["num_rows"] > 300
    labels = np.array(dataset["next_sentence_label"])
    assert 0.4 < labels.mean() < 0.6
    ids = dataset["input_ids"]
    assert all(len(x) <= 64 and x[0] == wordpiece.cls_token_id and x[-1] == wordpiece.sep_token_id for x in ids)
    assert meta["num_tokens"] == sum(map(len, ids)) and max(max(x) for x in ids) < wordpiece.vocab_size


@pytest.mark.skipif(not (SHARED / "corpora").is_dir(), reason="shared data ../shared/data/corpora not present")
def test_albert_on_chinese_documents_with_google_vocab(tmp_path):
    lines = (SHARED / "corpora" / "CLUECorpusSmall_bert_sampled.txt").read_text(encoding="utf-8").split("\n")
    corpus = tmp_path / "clue.txt"
    corpus.write_text("\n".join(lines[:2000]), encoding="utf-8")
    tokenizer = Tokenizer.load(SHARED / "vocab" / "google_zh_vocab.txt")
    dataset, meta, _ = load_dataset_dir(build_dataset(options("albert", corpus, seq_length=128), tokenizer))
    assert meta["source"]["format"] == "documents" and len(dataset) > 200
    assert 0.4 < np.mean(dataset["next_sentence_label"]) < 0.6
    assert all(len(x) <= 128 and max(x) < tokenizer.vocab_size for x in dataset["input_ids"])


# --- packing -------------------------------------------------------------------------------------

def test_lm_packing_loses_no_tokens_and_ignores_num_proc(tmp_path, bpe):
    corpus = kjv(tmp_path, 90)  # > 256 KiB: several shards
    shards = open_corpus(str(corpus)).shards
    assert len(shards) >= 2
    expected = []
    for shard in shards:
        for document in iter_documents(shard):
            expected += [t for ids in bpe.encode_batch(document) for t in ids] + [bpe.eos_token_id]
    one = load_dataset_dir(build_dataset(options("lm", corpus, seq_length=64), bpe, tmp_path / "one"))
    two = load_dataset_dir(build_dataset(options("lm", corpus, seq_length=64, num_proc=2), bpe, tmp_path / "two"))
    blocks = one[0]["input_ids"]
    assert [t for block in blocks for t in block] == expected and one[1]["num_tokens"] == len(expected)
    assert sum(len(b) < 64 for b in blocks) <= len(shards) and max(map(len, blocks)) == 64
    assert two[0]["input_ids"] == blocks and two[1]["key"] == one[1]["key"]


def test_mlm_blocks_are_wrapped_full_sentences_without_loss(tmp_path, wordpiece):
    corpus = kjv(tmp_path, 8)
    dataset, meta, _ = load_dataset_dir(build_dataset(options("mlm", corpus, seq_length=32), wordpiece))
    blocks = dataset["input_ids"]
    cls, sep = wordpiece.cls_token_id, wordpiece.sep_token_id
    assert all(b[0] == cls and b[-1] == sep and len(b) <= 32 for b in blocks)
    assert all(len(b) == 32 for b in blocks[:-1])
    expected = []
    for index, chapter in enumerate(CHAPTERS[:8]):
        expected += ([sep] if index else []) + [t for ids in wordpiece.encode_batch(chapter.split("\n")) for t in ids]
    assert [t for b in blocks for t in b[1:-1]] == expected


# --- images --------------------------------------------------------------------------------------

def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_image_processor_on_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    dataset, meta, tokenizer = load_dataset_dir(build_dataset(options("image", None)))
    assert tokenizer is None and meta["label_names"] == [str(i) for i in range(10)]
    assert len(dataset) == 1797 and dataset["label"] == digits.target.tolist()
    pixels = decode(dataset[5]["image"])
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, np.round(digits.images[5] * 255 / 16))


def make_images(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"cat/0.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
              "cat/1.png": rng.integers(0, 256, (6, 4, 3), dtype=np.uint8),
              "dog/0.png": rng.integers(0, 256, (3, 3), dtype=np.uint8)}
    for name, array in arrays.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / name)
    return arrays


def test_image_processor_on_a_folder_and_a_tsv(tmp_path):
    arrays = make_images(tmp_path / "images")
    dataset, meta, _ = load_dataset_dir(build_dataset(options("image", tmp_path / "images")))
    assert meta["label_names"] == ["cat", "dog"] and dataset["label"] == [0, 0, 1]
    for row, array in zip(dataset, arrays.values()):
        assert np.array_equal(decode(row["image"]), array)
    tsv = tmp_path / "list.tsv"
    tsv.write_text("label\timage_path\ndog\timages/dog/0.png\ncat\timages/cat/1.png\n")
    dataset, meta, _ = load_dataset_dir(build_dataset(options("image", tsv)))
    assert meta["label_names"] == ["cat", "dog"] and dataset["label"] == [1, 0]
    assert np.array_equal(decode(dataset[1]["image"]), arrays["cat/1.png"])


def test_broken_image_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr("uer.preprocess.images.IMAGES_PER_SHARD", 1)  # 4 shards: the error comes from a worker
    make_images(tmp_path / "images")
    (tmp_path / "images" / "dog" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    for num_proc in (1, 2):
        build = lambda: build_dataset(options("image", tmp_path / "images", num_proc=num_proc), None, out)
        one_line_error(build, "broken.png", "cannot be decoded")
        assert not out.exists() and not list(tmp_path.glob(".out*"))


# --- cache and dataset directories ---------------------------------------------------------------

def test_cache_reuses_equal_inputs_and_keys_on_content(tmp_path, wordpiece, caplog):
    corpus = kjv(tmp_path, 5)
    first = build_dataset(options("mlm", corpus, seq_length=32), wordpiece)
    assert first.parent == tmp_path / "cache" / "datasets"
    stamp = (first / META_FILE).stat().st_mtime_ns
    caplog.set_level("INFO")
    again = build_dataset(options("mlm", corpus, seq_length=32, num_proc=2), wordpiece)
    assert again == first and (first / META_FILE).stat().st_mtime_ns == stamp and "cached" in caplog.text
    copy = tmp_path / "copy.txt"
    copy.write_bytes(corpus.read_bytes())
    assert build_dataset(options("mlm", copy, seq_length=32), wordpiece) == first
    assert build_dataset(options("mlm", corpus, seq_length=48), wordpiece) != first
    copy.write_bytes(corpus.read_bytes() + b"One more line.\n")
    assert build_dataset(options("mlm", copy, seq_length=32), wordpiece) != first


def test_output_dir_rules_and_loading_errors(tmp_path, wordpiece):
    corpus = kjv(tmp_path, 3)
    out = tmp_path / "out"
    build_dataset(options("mlm", corpus, seq_length=32), wordpiece, out)
    build_dataset(options("mlm", corpus, seq_length=16), wordpiece, out)  # replaces the older dataset
    assert read_meta(out)["options"]["seq_length"] == 16 and not list(tmp_path.glob(".out*"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    one_line_error(lambda: build_dataset(options("mlm", corpus), wordpiece, tmp_path / "mine"), "not a uer dataset")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    one_line_error(lambda: load_dataset_dir(tmp_path / "nowhere"), "nowhere", "not found")
    one_line_error(lambda: load_dataset_dir(tmp_path / "mine"), "not a uer dataset")


# --- command line --------------------------------------------------------------------------------

def run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "UER_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "uer.cli.preprocess", *overrides], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_end_to_end_and_errors(tmp_path):
    corpus, out = kjv(tmp_path, 4), tmp_path / "out"
    done = run_cli(tmp_path, "data=lm", f"data.corpus={corpus}", "data.seq_length=32", "data.batch_size=3",
                   "data.num_proc=1", f"output={out}")
    assert done.returncode == 0, done.stderr
    dataset, meta, _ = load_dataset_dir(out)
    assert f"dataset: {out}" in done.stdout and f"rows: {len(dataset)}" in done.stdout
    assert f"tokens: {meta['num_tokens']}" in done.stdout and meta["processor"] == "lm"
    for overrides, needle in [((f"data.corpus={tmp_path / 'missing.txt'}",), "missing.txt: file not found"),
                              (("data.seq_lenght=64",), "unknown key data.seq_lenght")]:
        failed = run_cli(tmp_path, *overrides, f"output={tmp_path / 'failed'}")
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
        assert not (tmp_path / "failed").exists()
