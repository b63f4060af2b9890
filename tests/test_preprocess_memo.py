"""The word memo of bulk tokenization gives exactly the ids of Tokenizer.encode_batch."""
from itertools import islice
from pathlib import Path

import pytest
from tokenizers import normalizers
from uer.preprocess.word_memo import MemoEncoder

import uer.data.default as default_data
from uer.data.tokenizer import Tokenizer

EDGE_LINES = [
    "[MASK] is a special token", "a [mask] in lower case", "[CLS] x [SEP] y", "<|endoftext|> after", "<extra_id_0> z",
    "Café naïve résumé ÅNGSTRÖM", "ctrl\x00chars\x01 and \u200b zero width", "emoji 😀 text ☃", "x" * 300, "   ",
    "tab\tseparated\ttext", "中文English混合，标点！", "don't stop-believing... (really?)", "ﬁ ligature ½ ①",
    "word word word word", "", "ascii\x00ctrl\x01\x7f\x0b\x0cline\r\n", "Tab\tCase MIXED\x1cSEP\x1f", "a\u00a0b\u3000c",
]


def corpus_lines(path: Path, n: int = 1500) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [line.rstrip("\n") for line in islice(f, n)]


@pytest.fixture(scope="module")
def corpora(shared_data) -> list[str]:
    c = shared_data / "corpora"
    kjv = Path(default_data.__file__).parent / "kjv.txt"
    return (corpus_lines(kjv) + corpus_lines(c / "CLUECorpusSmall_sampled.txt", 300)
            + corpus_lines(c / "news-commentary-v13-en-zh_sampled.txt", 500)
            + corpus_lines(c / "book_review_cls.txt", 500) + EDGE_LINES)


@pytest.mark.parametrize("spec", ["vocab/google_uncased_en_vocab.txt", "vocab/google_cased_en_vocab.txt",
                                  "vocab/google_zh_vocab.txt", "vocab/google_zh_with_sentinel_vocab.txt",
                                  "gpt2", "builtin:kjv-wordpiece", "builtin:kjv-bpe"])
def test_memo_gives_the_ids_of_encode_batch(spec, corpora, shared_data):
    bert = spec.startswith("vocab/") or spec == "builtin:kjv-wordpiece"
    if spec == "gpt2":
        spec = f"{shared_data / 'vocab/huggingface_gpt2_vocab.txt'},{shared_data / 'vocab/huggingface_gpt2_merges.txt'}"
    elif not spec.startswith("builtin:"):
        spec = str(shared_data / spec)
    tokenizer = Tokenizer.load(spec)
    encoder = MemoEncoder(tokenizer)
    assert encoder.memoizable
    assert encoder.bert == bert  # the regex path is what is tested for BERT vocabularies
    expected = tokenizer.encode_batch(corpora)
    assert encoder.encode_batch(corpora) == expected
    assert encoder.memo  # words were memoized, not all lines sent to the tokenizer
    assert encoder.encode_batch(corpora) == expected  # and the memo's second pass agrees


def test_lines_with_added_tokens_and_a_full_memo_still_agree(shared_data):
    tokenizer = Tokenizer.load(str(shared_data / "vocab/google_uncased_en_vocab.txt"))
    encoder = MemoEncoder(tokenizer, max_words=3)
    lines = ["the [MASK] of [SEP] the", "alpha beta gamma delta epsilon", "alpha [UNK] beta"]
    assert encoder.encode_batch(lines) == tokenizer.encode_batch(lines)
    assert len(encoder.memo) <= 3 + 1 + 5  # cleared once past 3 words, checked before each line


def test_memo_changes_what_a_wrong_memo_would_return(shared_data):
    """The comparison above can fail: a poisoned memo entry shows in the ids."""
    tokenizer = Tokenizer.load(str(shared_data / "vocab/google_uncased_en_vocab.txt"))
    encoder = MemoEncoder(tokenizer)
    encoder.memo["the"] = [0]
    assert encoder.encode_batch(["the end"]) != tokenizer.encode_batch(["the end"])


def test_a_character_the_tokenizer_does_not_cut_out_joins_the_runs(shared_data):
    """Without handle_chinese_chars, CJK characters are not cut out alone: the first check of one
    excludes it from the single-character pieces, and the ids still equal encode_batch's."""
    tokenizer = Tokenizer.load(str(shared_data / "vocab/google_zh_vocab.txt"))
    tokenizer.backend.normalizer = normalizers.BertNormalizer(handle_chinese_chars=False, lowercase=True)
    encoder = MemoEncoder(tokenizer)
    lines = ["中文English混合，标点！", "我们 在 这里。", "中文"]
    assert encoder.encode_batch(lines) == tokenizer.encode_batch(lines)
    assert "中" in encoder.excluded and "，" not in encoder.excluded
