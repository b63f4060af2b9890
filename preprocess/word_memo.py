"""Bulk tokenization with a memo of words: the same ids as ``Tokenizer.encode_batch``, faster because
most words recur.

A ``tokenizers`` pipeline is normalizer -> pre-tokenizer -> model. The model step (WordPiece, BPE,
Unigram) depends on one pre-tokenized word alone, so its result is kept per word, and a word seen
before costs one dict lookup; no ``Encoding`` object is built per line.

BERT tokenizers (BertNormalizer with ``clean_text`` + BertPreTokenizer) normalize character by
character and always cut at whitespace and around punctuation and CJK characters (Devlin et al.
2019, ``tokenization.py``: ``_clean_text``, ``_tokenize_chinese_chars``, ``_run_split_on_punc``). For
them a line is cut **before** normalization by one regex (`raw_pattern`) into pieces: one punctuation
or CJK character, or a run of other non-space characters; a piece's ids, computed once by the whole
tokenizer, are memoized under the raw piece. The ids of a line are then the concatenation of its
pieces' ids, exactly: a character is cut out alone only after checking, the first time it occurs,
that this tokenizer leaves it unchanged and cuts around it (`MemoEncoder._isolated`); a character that
fails the check joins the runs, which the tokenizer splits itself. Whitespace characters cut only
when the tokenizer drops them between two words (checked for all of them up front).
On CLUECorpusSmall (Chinese) this is 8x faster than ``encode_batch_fast`` on one core (0.22 s
against 1.82 s for 2 MB), and it no longer needs Python's normalization of ASCII lines.

Other tokenizers normalize and pre-tokenize ASCII lines with their own calls (``normalize_str``,
``pre_tokenize_str``) and memoize only the model; their non-ASCII lines, and every line in which an
added token (``[MASK]``, ``<extra_id_0>`` ...) occurs, go through the full tokenizer. A BPE model with
dropout (random merges) is never memoized. ``tests/test_preprocess_memo.py`` compares every line of
the shared corpora, plus edge cases, with ``encode_batch`` for WordPiece, byte-level BPE and the
builtin tokenizers.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from itertools import chain

MAX_WORDS = 1 << 20
"""Distinct words kept before the memo is cleared (bounds a worker's memory on huge vocabularies)."""
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
"""Code point ranges BERT pads with spaces (``_is_chinese_char`` of Google's ``tokenization.py``)."""
BMP = 0x10000
"""Code points below this are scanned for punctuation; every Unicode whitespace character is below 0x3001."""


@functools.cache
def single_candidates() -> str:
    """Characters that BERT tokenizers usually cut out alone: Unicode punctuation (P*) and the CJK
    ranges, as a regex character class body. Each is checked per tokenizer before it is trusted
    (`MemoEncoder._isolated`); punctuation beyond the BMP is left to the runs (exact, only slower)."""
    punct = "".join(chr(c) for c in range(BMP) if unicodedata.category(chr(c)).startswith("P"))
    return re.escape(punct) + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES)


@functools.cache
def single_candidate() -> re.Pattern:
    """Matches one of `single_candidates`."""
    return re.compile(f"[{single_candidates()}]")


def raw_pattern(separators: str, excluded: str) -> re.Pattern:
    """The regex cutting a raw line into pieces: one candidate character (`single_candidates` minus
    ``excluded``) or a run of characters that are neither candidates nor ``separators``."""
    singles = single_candidates()
    if excluded:  # a character class minus some characters: a lookahead in front of it
        single = f"(?![{re.escape(excluded)}])[{singles}]"
        run = f"(?:[{re.escape(excluded)}]|[^{singles}{re.escape(separators)}])+"
    else:
        single, run = f"[{singles}]", f"[^{singles}{re.escape(separators)}]+"
    return re.compile(f"{single}|{run}")


class MemoEncoder:
    """``encode_batch(texts: list[str]) -> list[list[int]]`` equal to ``tokenizer.encode_batch(texts)``
    (no special tokens added).

    Args:
        tokenizer: a :class:`uer.data.tokenizer.Tokenizer`.
        max_words: memo size before it is cleared.
    """

    def __init__(self, tokenizer, max_words: int = MAX_WORDS):
        self.tokenizer = tokenizer
        backend = self.backend = tokenizer.backend
        self.normalizer, self.pre_tokenizer, self.model = backend.normalizer, backend.pre_tokenizer, backend.model
        self.memoizable = self.pre_tokenizer is not None and not getattr(self.model, "dropout", None)
        added = sorted(backend.get_added_tokens_decoder().values(), key=lambda t: len(t.content), reverse=True)
        self.added = re.compile("|".join(re.escape(t.content) for t in added)) if added else None
        self.added_normalized = any(t.normalized for t in added)
        self.max_words = max_words
        self.memo: dict[str, list[int]] = {}
        pipeline = json.loads(backend.to_str())
        normalizer, pre_tokenizer = pipeline.get("normalizer") or {}, pipeline.get("pre_tokenizer") or {}
        self.bert = bool(normalizer.get("type") == "BertNormalizer" and normalizer.get("clean_text")
                         and pre_tokenizer.get("type") == "BertPreTokenizer")
        if self.bert:
            self.separators = "".join(c for c in map(chr, range(0x3001))
                                      if c.isspace() and self._words("a" + c + "a") == ["a", "a"])
            self.excluded = ""
            self.split = raw_pattern(self.separators, self.excluded).findall

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if not self.memoizable:
            return self.tokenizer.encode_batch(texts)
        out: list[list[int] | None] = []
        full: list[int] = []  # positions of lines that need the whole tokenizer
        encode = self._encode_memoized if self.bert else self._encode_ascii
        for text in texts:
            ids = None if self._has_added_token(text) else encode(text)
            if ids is None:
                full.append(len(out))
            out.append(ids)
        if full:
            for position, ids in zip(full, self.tokenizer.encode_batch([texts[i] for i in full])):
                out[position] = ids
        return out

    def _words(self, text: str) -> list[str]:
        """The words of a raw line, by the tokenizer's own normalizer and pre-tokenizer."""
        normalized = self.normalizer.normalize_str(text) if self.normalizer is not None else text
        return [word for word, _ in self.pre_tokenizer.pre_tokenize_str(normalized)]

    def _has_added_token(self, text: str) -> bool:
        """Whether an added token occurs in the line, raw or (for a token matched after
        normalization) normalized: such lines go through the full tokenizer."""
        if self.added is None:
            return False
        if self.added.search(text):
            return True
        return self.added_normalized and self.normalizer is not None and bool(
            self.added.search(self.normalizer.normalize_str(text)))

    def _check_memo(self) -> dict[str, list[int]]:
        if len(self.memo) > self.max_words:
            self.memo.clear()
        return self.memo

    def _encode_memoized(self, text: str) -> list[int]:
        """Ids of one line of a BERT tokenizer in one pass of C-level calls when every piece is in the
        memo (about 30% faster than `_encode_raw`'s loop), else by `_encode_raw`."""
        try:
            return list(chain.from_iterable(map(self.memo.__getitem__, self.split(text))))
        except KeyError:
            return self._encode_raw(text)

    def _encode_raw(self, text: str) -> list[int]:
        """Ids of one line of a BERT tokenizer, from the ids of its raw pieces."""
        memo = self._check_memo()
        ids: list[int] = []
        for piece in self.split(text):
            piece_ids = memo.get(piece)
            if piece_ids is None:
                if len(piece) == 1 and not self._isolated(piece):
                    return self._encode_raw(text)  # cut again without this character
                piece_ids = memo[piece] = self.backend.encode(piece, add_special_tokens=False).ids
            ids += piece_ids
        return ids

    def _isolated(self, char: str) -> bool:
        """Whether the tokenizer leaves ``char`` unchanged and cuts around it (checked between two
        letters). If not, it joins the runs from now on (the pattern is rebuilt; memoized pieces stay
        right, their ids do not depend on the cut) and False is returned. A run character passes."""
        if not single_candidate().fullmatch(char) or char in self.excluded:
            return True
        if self._words("a" + char + "a") == ["a", char, "a"]:
            return True
        self.excluded += char
        self.split = raw_pattern(self.separators, self.excluded).findall
        return False

    def _encode_ascii(self, text: str) -> list[int] | None:
        """Ids of one line through the tokenizer's normalizer and pre-tokenizer and the memoized
        model, or None (the full tokenizer) for a line with a non-ASCII character."""
        if not text.isascii():
            return None
        memo = self._check_memo()
        ids: list[int] = []
        for word in self._words(text):
            word_ids = memo.get(word)
            if word_ids is None:
                word_ids = memo[word] = [token.id for token in self.model.tokenize(word)]
            ids += word_ids
        return ids
