"""Tests of uer.data.tokenizer: every load form, training, saving, Hugging Face compatibility, errors."""

import importlib.util
import json
from importlib import resources
from pathlib import Path

import pytest

from uer.data.tokenizer import Tokenizer, train_tokenizer
from uer.errors import UerError

VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vocab"
needs_shared = pytest.mark.skipif(not VOCAB.is_dir(), reason="../shared/data (shared test data) is absent")
KJV = Path(str(resources.files("uer.data.default").joinpath("kjv.txt")))
VERSE = "In the beginning God created the heaven and the earth."
TEXTS = [VERSE, "Héllo Wörld, naïve CAFÉ résumé!", "我爱北京天安门，今天天气很好。", "it's\tunaffable", ""]
BERT_ROLES = {"cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "pad": "[PAD]", "unk": "[UNK]"}


@pytest.fixture
def small_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(KJV.read_text(encoding="utf-8").split("\n")[:4000]), encoding="utf-8")
    return path


def test_builtin_wordpiece(wordpiece):
    assert wordpiece.vocab_size == 8000
    assert wordpiece.special_tokens == BERT_ROLES
    assert (wordpiece.pad_token_id, wordpiece.unk_token_id, wordpiece.cls_token_id) == (0, 1, 2)
    assert (wordpiece.sep_token_id, wordpiece.mask_token_id, wordpiece.bos_token_id) == (3, 4, None)
    assert wordpiece.all_special_ids == [0, 1, 2, 3, 4]
    [ids] = wordpiece.encode_batch([VERSE])
    assert len(ids) == 11 and not set(ids) & set(wordpiece.all_special_ids)  # no [CLS]/[SEP], no [UNK]
    assert wordpiece.decode(ids) == VERSE.lower()
    with_specials = [wordpiece.cls_token_id, *ids, wordpiece.sep_token_id]
    assert wordpiece.decode(with_specials, skip_special_tokens=True) == VERSE.lower()
    assert wordpiece.decode(with_specials).startswith("[CLS] in the beginning")
    assert wordpiece.token_to_id("[MASK]") == 4 and wordpiece.token_to_id("no-such-token") is None


def test_builtin_bpe(bpe):
    assert bpe.vocab_size == 8000
    assert bpe.special_tokens == {"pad": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"}
    assert (bpe.bos_token_id, bpe.eos_token_id, bpe.pad_token_id) == (0, 0, 0)
    assert bpe.cls_token_id is None and bpe.unk_token_id is None
    assert bpe.all_special_ids == [0]
    ids = bpe.encode_batch(TEXTS)
    assert [bpe.decode(i) for i in ids] == TEXTS  # byte-level: lossless, cased, nothing unknown
    assert 0 not in ids[0] and len(ids[0]) < len(VERSE) / 3


@pytest.mark.parametrize("name", ["kjv-wordpiece", "kjv-bpe"])
def test_builtin_equals_retrain(name):
    shipped = resources.files("uer.data.default").joinpath(f"{name}.json").read_text(encoding="utf-8")
    assert train_tokenizer(name).backend.to_str(pretty=True) == shipped


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_train_is_deterministic(small_corpus, kind):
    first, second = (Tokenizer.train([small_corpus], kind=kind, vocab_size=600) for _ in range(2))
    assert first.backend.to_str() == second.backend.to_str()
    assert first.fingerprint() == second.fingerprint()
    assert first.vocab_size == 600


def test_train_options(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\nAaron Moses Aaron\n   \nMoses Aaron\n", encoding="utf-8")
    cased = Tokenizer.train([corpus], vocab_size=60, lowercase=False, min_frequency=1)
    assert cased.token_to_id("Aaron") is not None and cased.token_to_id("aaron") is None
    uncased = Tokenizer.train([corpus], vocab_size=60, min_frequency=1)
    assert uncased.token_to_id("aaron") is not None and uncased.special_tokens["mask"] == "[MASK]"
    lower_bpe = Tokenizer.train([corpus], kind="bpe", vocab_size=300, min_frequency=1)
    assert lower_bpe.decode(lower_bpe.encode_batch(["Moses"])[0]) == "moses"


def test_train_errors(tmp_path):
    blank, bad = tmp_path / "blank.txt", tmp_path / "bad.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    bad.write_bytes(b"good line\n\xff\xfe bad bytes\n")
    cases = [([blank], "bpe", blank), ([bad], "wordpiece", bad), ([tmp_path / "no.txt"], "bpe", "no.txt"),
             ([tmp_path], "bpe", tmp_path), ([bad], "unigram", "unigram"), ([], "bpe", "no corpus")]
    for files, kind, where in cases:
        with pytest.raises(UerError) as error:
            Tokenizer.train(files, kind=kind, vocab_size=300)
        assert str(where) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["kjv-wordpiece", "kjv-bpe"])
def test_save_load_round_trip(tmp_path, name):
    tokenizer = Tokenizer.load(f"builtin:{name}")
    tokenizer.save(tmp_path / "tok", model_max_length=128)
    for spec in (tmp_path / "tok", tmp_path / "tok" / "tokenizer.json"):
        again = Tokenizer.load(spec)
        assert again.special_tokens == tokenizer.special_tokens
        assert again.fingerprint() == tokenizer.fingerprint()
        assert again.encode_batch(TEXTS) == tokenizer.encode_batch(TEXTS)
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 128 and config["tokenizer_class"] == "PreTrainedTokenizerFast"


@pytest.mark.parametrize("name", ["kjv-wordpiece", "kjv-bpe"])
def test_saved_directory_loads_in_transformers(tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tokenizer = Tokenizer.load(f"builtin:{name}")
    tokenizer.save(tmp_path, model_max_length=256)
    ours = tokenizer.encode_batch(TEXTS)
    for hf in (transformers.AutoTokenizer.from_pretrained(str(tmp_path)),
               transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))):
        assert [hf(t, add_special_tokens=False)["input_ids"] for t in TEXTS] == ours
        assert hf.decode(ours[0]) == tokenizer.decode(ours[0])
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert (hf.pad_token_id, hf.mask_token_id) == (tokenizer.pad_token_id, tokenizer.mask_token_id)
    assert hf.model_max_length == 256
    if tokenizer.cls_token_id is not None:  # BERT template [CLS] A [SEP]; GPT-2 style adds nothing
        assert hf(VERSE)["input_ids"] == [tokenizer.cls_token_id, *ours[0], tokenizer.sep_token_id]
    else:
        assert hf(VERSE)["input_ids"] == ours[0]


def test_roles_from_config_and_inference(tmp_path, wordpiece):
    wordpiece.backend.save(str(tmp_path / "tokenizer.json"))
    assert Tokenizer.load(tmp_path).special_tokens == wordpiece.special_tokens  # inferred from names
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"cls_token": {"content": "[SEP]", "special": True}, "sep_token": "[CLS]", "pad_token": None}))
    assert Tokenizer.load(tmp_path).special_tokens == {"cls": "[SEP]", "sep": "[CLS]"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<nope>"}))
    with pytest.raises(UerError, match="'<nope>' .*not in the vocabulary") as error:
        Tokenizer.load(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(error.value)


def test_constructor_checks_roles(wordpiece):
    with pytest.raises(UerError, match="unknown special-token role"):
        Tokenizer(wordpiece.backend, {"separator": "[SEP]"})
    assert Tokenizer(wordpiece.backend, {"cls": "[CLS]"}).fingerprint() != wordpiece.fingerprint()


@needs_shared
@pytest.mark.parametrize("name, lowercase", [("google_uncased_en_vocab.txt", True),
                                             ("google_cased_en_vocab.txt", False), ("google_zh_vocab.txt", True)])
def test_wordpiece_vocab_txt_matches_bert(name, lowercase):
    bert = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")  # Google's BERT in Python
    tokenizer = Tokenizer.load(VOCAB / name)
    assert tokenizer.backend.normalizer.lowercase is lowercase  # detected from the vocabulary
    assert tokenizer.special_tokens == BERT_ROLES
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 100, 101)
    reference = bert.BertTokenizerLegacy(vocab_file=str(VOCAB / name), do_lower_case=lowercase)
    expected = [reference(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert tokenizer.encode_batch(TEXTS) == expected
    assert len(tokenizer.encode_batch(["我爱北京"])[0]) == 4  # one token per Chinese character


@needs_shared
def test_wordpiece_vocab_txt_lowercase_override():
    tokenizer = Tokenizer.load(VOCAB / "google_cased_en_vocab.txt", lowercase=True)
    assert tokenizer.backend.normalizer.lowercase is True
    assert tokenizer.encode_batch(["Hello"]) == tokenizer.encode_batch(["hello"])


@needs_shared
def test_byte_level_bpe_all_forms(tmp_path):
    txt, merges = VOCAB / "huggingface_gpt2_vocab.txt", VOCAB / "huggingface_gpt2_merges.txt"
    as_json = tmp_path / "vocab.json"
    tokens = txt.read_text(encoding="utf-8").split("\n")[:-1]
    as_json.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (tmp_path / "merges.txt").write_bytes(merges.read_bytes())
    loaded = [Tokenizer.load(txt), Tokenizer.load(f"{txt},{merges}"), Tokenizer.load(as_json)]
    assert loaded[0].encode_batch(["Hello world"]) == [[31414, 232]]  # roberta-base's ids
    assert all(t.encode_batch(TEXTS) == loaded[0].encode_batch(TEXTS) for t in loaded)
    assert loaded[0].special_tokens == {"cls": "<s>", "sep": "</s>", "mask": "<mask>", "pad": "<pad>",
                                        "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
    assert loaded[0].all_special_ids == [0, 1, 2, 3, 50264]


@needs_shared
def test_sentencepiece_matches_sentencepiece(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    lines = [line for line in KJV.read_text(encoding="utf-8").split("\n")[:3000] if line]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(tmp_path / "bpe"),
                                   vocab_size=600, model_type="bpe", byte_fallback=True, minloglevel=2)
    texts = ["and the lord said unto moses", "  Let there   be light: and there was light. ", "ﬁ café 中文", "x", ""]
    for model in (VOCAB / "sentencepiece.bpe.model", tmp_path / "bpe.model"):
        reference, tokenizer = spm.SentencePieceProcessor(model_file=str(model)), Tokenizer.load(model)
        assert tokenizer.encode_batch(texts) == [reference.encode(t) for t in texts]
    shared = Tokenizer.load(VOCAB / "sentencepiece.bpe.model")
    assert [shared.bos_token_id, shared.pad_token_id, shared.eos_token_id, shared.unk_token_id] == [0, 1, 2, 3]
    assert shared.decode(shared.encode_batch(["in the beginning"])[0]) == "in the beginning"
    shared.save(tmp_path / "saved")
    assert Tokenizer.load(tmp_path / "saved").fingerprint() == shared.fingerprint()


def test_load_errors_name_the_path(tmp_path):
    spm_problem = "not a SentencePiece" if importlib.util.find_spec("sentencepiece") else "needs the packages"
    (tmp_path / "empty_dir").mkdir()
    files = {"corrupt.json": b'{"version": "1.0", "model": {"type": "Nope"}}', "broken.json": b"{not json",
             "latin1.txt": b"[UNK]\ncaf\xe9\n", "empty.txt": b"", "no_unk.txt": b"[CLS]\n[SEP]\nhello\n",
             "garbage.model": b"\x00\x01 this is not a protobuf \xff\xff", "bad_vocab.txt": b"a\nb\nab\n",
             "bad_merges.txt": b"#version: 0.2\na b c\n", "v_vocab.txt": b"a\nb\n", "v_merges.txt": b"a c\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cases = [  # (spec, the path the message names, the problem it states)
        ("missing.txt", "missing.txt", "no such file"), ("empty_dir", "empty_dir", "no tokenizer.json"),
        ("corrupt.json", "corrupt.json", "not a valid tokenizer.json"),
        ("broken.json", "broken.json", "not a valid"),
        ("latin1.txt", "latin1.txt", "invalid UTF-8"), ("empty.txt", "empty.txt", "empty"),
        ("no_unk.txt", "no_unk.txt", "no unknown token"),
        ("garbage.model", "garbage.model", spm_problem),
        ("bad_vocab.txt,bad_merges.txt", "bad_merges.txt", "line 2: expected two tokens"),
        ("v_vocab.txt", "v_merges.txt", "does not fit vocabulary"),
    ]
    for spec, path, problem in cases:
        spec = ",".join(str(tmp_path / part) for part in spec.split(","))
        with pytest.raises(UerError) as error:
            Tokenizer.load(spec)
        message = str(error.value)
        assert str(tmp_path / path) in message and problem in message and "\n" not in message, message
    with pytest.raises(UerError, match="builtin:kjv-klingon: unknown builtin; available: kjv-wordpiece, kjv-bpe$"):
        Tokenizer.load("builtin:kjv-klingon")
