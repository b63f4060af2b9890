"""The preprocessing stage: corpus validation and shards, the five processors, the cached build, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from checks import one_line_error
from PIL import Image
from uer.preprocess import corpus as corpus_module
from uer.preprocess.build import META_FILE, build_dataset, load_dataset_dir, read_meta
from uer.preprocess.corpus import default_corpus, iter_documents, open_corpus
from uer.preprocess.registry import options_from_config

from uer.cli.preprocess import main as preprocess_main
from uer.data.collators import shipped_data_config
from uer.data.tokenizer import Tokenizer

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
    return options_from_config(shipped_data_config(name, corpus=None if corpus is None else str(corpus),
                                                   **{"num_proc": 1, **kwargs}))


# --- corpus --------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [64, 4096])
def test_scanning_by_blocks_counts_what_reading_line_by_line_counts(block, tmp_path, monkeypatch):
    """Blocks decoded at once, and the line-by-line reader where a block has an invalid or overlong
    line, give the counts and digest of the line-by-line reader alone."""
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"abc\n\n \xef\xbb\xbf \r\n" + "中文\n".encode() + b"bad\xff\n" + b"y\n" * 50
                     + b"x" * (corpus_module.MAX_LINE_BYTES + 10) + b"\n" + b"z\n" * 50 + b"tail")
    monkeypatch.setattr(corpus_module, "SCAN_BLOCK", block)
    digest = hashlib.sha256()
    scanned = corpus_module.scan_file(path, "skip", digest)
    expected, reference = {"bytes": 0, "lines": 0, "blank_lines": 0, "skipped_invalid_lines": 0, "long_lines": 0,
                           "lineno": 0}, hashlib.sha256()
    with open(path, "rb") as handle:
        corpus_module._scan_lines(handle, path.stat().st_size, path, "skip", reference, expected)
    del expected["lineno"]
    assert scanned == {"file": str(path), **expected} and digest.digest() == reference.digest()
    assert scanned["skipped_invalid_lines"] == 1 and scanned["long_lines"] == 1 and scanned["blank_lines"] == 1


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
    one_line_error(lambda: options_from_config(shipped_data_config("bert", seq_lenght=64)),
                   "unknown key data.seq_lenght", "valid keys:", "seq_length")
    one_line_error(lambda: options_from_config(shipped_data_config("bert", processor={"_target_": "uer.bret"})),
                   "data.processor._target_=uer.bret", "no such class")
    one_line_error(lambda: options_from_config(shipped_data_config("bert", seq_length=4)), "data.seq_length")
    image = options_from_config(shipped_data_config("image", batch_size=8))
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


@pytest.mark.parametrize("name, rows, digest", [("bert", 507, "c1c552139cde0358"), ("albert", 384, "a604f5476349afb3")])
def test_sentence_pairs_are_those_of_the_list_based_recipe(name, rows, digest, wordpiece):
    """The span-based builder draws and cuts exactly as the list-based one it replaced: the rows'
    digest was computed with that one (commit 8f8eb73) on the same documents and seed."""
    documents, _ = synthetic_documents(300)
    documents += [[[5]], [list(range(2000, 2300))]]  # a one-token document, a sentence over the budget
    made = list(options(name, None, seq_length=64).instances(documents, random.Random(3), wordpiece))
    assert len(made) == rows and hashlib.sha256(json.dumps(made).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("name", ["bert", "mlm"])
def test_record_batches_hold_the_rows_of_generate(name, tmp_path, wordpiece):
    """``batches`` (numpy-built for sentence pairs, `record_batch` for the rest) writes the rows of
    ``generate``, batch by batch."""
    processor = options(name, kjv(tmp_path, 20), seq_length=64)
    shard = processor.plan().shards[0]
    expected = pa.Table.from_pylist(list(processor.generate(shard, wordpiece)), schema=processor.schema)
    batches = list(processor.batches(shard, wordpiece, 100))
    assert len(batches) == -(-expected.num_rows // 100) > 1 and pa.Table.from_batches(batches).equals(expected)


def test_bert_dataset_on_the_default_corpus(tmp_path, wordpiece):
    path = build_dataset(options("bert", kjv(tmp_path, 60), seq_length=64), wordpiece)
    dataset, meta, tokenizer = load_dataset_dir(path)
    assert meta["processor"] == "uer.preprocess.sentence_pair.NspProcessor" and meta["source"]["format"] == "documents"
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
        def build():
            return build_dataset(options("image", tmp_path / "images", num_proc=num_proc), None, out)
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


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    corpus, out = kjv(tmp_path, 4), tmp_path / "out"
    done = run_cli(tmp_path, "data=lm", f"data.corpus={corpus}", "data.seq_length=32", "data.batch_size=3",
                   "data.num_proc=1", f"output={out}")
    assert done.returncode == 0, done.stderr
    dataset, meta, _ = load_dataset_dir(out)
    assert f"dataset: {out}" in done.stdout and f"rows: {len(dataset)}" in done.stdout
    assert f"tokens: {meta['num_tokens']}" in done.stdout
    assert meta["processor"] == "uer.preprocess.causal_lm.CausalLmProcessor"
    for overrides, needle in [((f"data.corpus={tmp_path / 'missing.txt'}",), "missing.txt: file not found"),
                              (("data.seq_lenght=64",), "unknown key data.seq_lenght")]:
        status = preprocess_main([*overrides, f"output={tmp_path / 'failed'}"])  # in-process: the same main()
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert not (tmp_path / "failed").exists()


# --- scale: resumable shards, long lines, bounded memory -----------------------------------------

def rows_of(path: Path) -> list[dict]:
    dataset, _, _ = load_dataset_dir(path)
    return dataset.to_list()


def test_interrupted_build_reuses_finished_shards_and_equals_an_uninterrupted_one(tmp_path, wordpiece, monkeypatch):
    import uer.preprocess.shards as shards_module

    corpus = kjv(tmp_path, 40)
    monkeypatch.setattr("uer.preprocess.corpus.SHARD_BYTES", 16_000)
    def build(out):
        return build_dataset(options("bert", corpus, seq_length=64), wordpiece, out)
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "reference-cache"))
    reference = rows_of(build(tmp_path / "reference"))
    monkeypatch.setenv("UER_CACHE", str(tmp_path / "cache"))

    original, written = shards_module.write_shard, []

    def stop_after_three(processor, shard, tokenizer_dir, path):
        if len(written) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C (or the process was killed) here
        written.append(shard.index)
        return original(processor, shard, tokenizer_dir, path)

    monkeypatch.setattr(shards_module, "write_shard", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    (work,) = (tmp_path / "cache" / "shards").iterdir()
    assert sorted(p.name for p in work.glob("*.json")) == ["00000.json", "00001.json", "00002.json"]

    written.clear()
    monkeypatch.setattr(shards_module, "write_shard", lambda *a: written.append(a[1].index) or original(*a))
    out = build(tmp_path / "out")
    total = read_meta(out)["num_shards"]
    assert total > 6 and written == list(range(3, total))  # only the missing shards were written
    assert rows_of(out) == reference and not work.exists()


def test_bad_input_leaves_no_shards_behind(tmp_path, wordpiece):
    corpus = tmp_path / "short.txt"
    corpus.write_text("one\n")
    one_line_error(lambda: build_dataset(options("bert", corpus, seq_length=64), wordpiece), "gives no instances")
    assert not list((tmp_path / "cache" / "shards").iterdir())
    assert not list((tmp_path / "cache" / "datasets").iterdir())


def test_crlf_corpus_gives_the_same_rows_as_lf(tmp_path, wordpiece):
    for name in ("bert", "mlm"):
        lf, crlf = (build_dataset(options(name, kjv(tmp_path, 6, f"{name}-{nl!r}.txt", newline=nl), seq_length=48),
                                  wordpiece, tmp_path / f"{name}-{len(nl)}") for nl in ("\n", "\r\n"))
        assert rows_of(lf) == rows_of(crlf)


def test_very_long_lines_are_split_counted_and_processed(tmp_path, wordpiece):
    from uer.preprocess.corpus import MAX_LINE_BYTES

    words = ("alpha beta gamma délta " * (3 * MAX_LINE_BYTES // 23)).strip()
    path = tmp_path / "long.txt"
    path.write_text(f"a short first line\n{words}\nlast line\n", encoding="utf-8")
    corpus = open_corpus(str(path), corpus_format="lines")
    assert corpus.stats["long_lines"] == 1 and corpus.stats["lines"] == 3 and corpus.stats["skipped_invalid_lines"] == 0
    documents = [doc for shard in corpus.shards for doc in iter_documents(shard)]
    assert [len(doc) for doc in documents] == [1, 4, 1]  # the long line: one document of 4 pieces
    assert " ".join(documents[1]) == words  # cut at spaces, nothing lost
    cjk = "\u4e2d\u6587" * (MAX_LINE_BYTES // 3)  # no space: cut between characters
    path.write_text(f"{cjk}\n", encoding="utf-8")
    (document,) = [doc for shard in open_corpus(str(path)).shards for doc in iter_documents(shard)]
    assert len(document) >= 2 and "".join(document) == cjk
    mlm = read_meta(build_dataset(options("mlm", path, seq_length=128, corpus_format="lines"), wordpiece))
    assert mlm["source"]["long_lines"] == 1 and mlm["num_rows"] > 1000
    bert, meta, _ = load_dataset_dir(build_dataset(options("bert", path, seq_length=64, corpus_format="lines"),
                                                   wordpiece))
    assert meta["source"]["long_lines"] == 1 and max(len(row) for row in bert["input_ids"]) <= 64


def test_truncate_pair_matches_the_reference_token_by_token_loop():
    from uer.preprocess.sentence_pair import truncate_pair

    def reference(first, second, budget, rng):  # BERT's truncate_seq_pair
        while len(first) + len(second) > budget:
            longer = first if len(first) > len(second) else second
            del longer[0 if rng.random() < 0.5 else -1]

    for seed in range(50):
        draw = random.Random(seed)
        a, b = list(range(draw.randint(0, 40))), list(range(100, 100 + draw.randint(0, 40)))
        budget = draw.randint(1, 50)
        ours, theirs = (a[:], b[:]), (a[:], b[:])
        truncate_pair(*ours, budget, random.Random(seed))
        reference(*theirs, budget, random.Random(seed))
        assert ours == theirs


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    """uer-preprocess on 1x and 8x the same corpus (2 processes): the peak anonymous RSS of the
    process tree (memory-mapped Arrow pages aside) stays within 1.3x + 100 MiB while the corpus grows
    8 times."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from preprocess_scale import build_corpus, run

    peaks = {}
    for scale in (1, 8):
        corpus = tmp_path / f"corpus-{scale}.txt"
        build_corpus([default_corpus()], scale * 8_000_000, corpus, seed=0)
        peaks[scale] = run("mlm", corpus, 2, tmp_path, 0.1)["peak_tree_anon"]
    assert peaks[8] < 1.3 * peaks[1] + 100 * 2**20, peaks
