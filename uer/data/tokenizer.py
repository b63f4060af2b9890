"""The toolkit's one tokenizer: a Hugging Face `tokenizers.Tokenizer` plus the roles of its special tokens.

Every vocabulary format a user may bring is imported into a `tokenizers` backend (`Tokenizer.load`,
reading each format with `uer.data.tokenizer_formats`),
and a new WordPiece, byte-level BPE, character or SentencePiece unigram vocabulary can be trained from a
corpus (`Tokenizer.train`).
Special tokens (roles cls, sep, mask, pad, unk, bos, eos) belong to each instance, never to globals.

Builtin tokenizers ship as ``uer/data/default/<name>.json``; each is exactly what `train_tokenizer(name)`
produces from the shipped corpus ``kjv.txt`` (King James Bible):

- ``kjv-wordpiece``: BERT-style uncased WordPiece, ``Tokenizer.train(kind="wordpiece", vocab_size=8000,
  lowercase=True, min_frequency=2)``: 8000 entries, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.
- ``kjv-bpe``: GPT-2-style cased byte-level BPE, ``Tokenizer.train(kind="bpe", vocab_size=8000,
  lowercase=False, min_frequency=2)``: 8000 entries; ``<|endoftext|>``=0 is the bos, eos and pad token.

Regenerate a shipped file with ``train_tokenizer(name).backend.save("uer/data/default/<name>.json")``.

Two additions serve encoder-decoder objectives: sentinel tokens for T5 span corruption
(`Tokenizer.sentinel_ids`, `Tokenizer.add_sentinels`), and an optional target-side tokenizer
(`Tokenizer.target`, e.g. Chinese for English->Chinese translation) that is saved, loaded and
fingerprinted together with the source one, in a ``tgt_tokenizer/`` sub-directory.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, models, pre_tokenizers, processors, trainers

from uer.data.tokenizer_formats import (
    ROLES,
    bert_pipeline,
    byte_level_pipeline,
    char_pipeline,
    fail,
    merges_candidates,
    read_bpe,
    read_chat_template,
    read_json,
    read_sentencepiece,
    read_wordpiece_vocab,
    train_sentencepiece,
)
from uer.errors import UerError

"""The special-token roles a tokenizer may define."""
SENTINEL_FORMATS = ("<extra_id_{}>", "extra{}")
"""Sentinel token names looked for when none is configured: T5's and the ``extraN`` of UER's vocabularies."""
TARGET_DIR = "tgt_tokenizer"
"""Sub-directory holding the target-side tokenizer of a saved tokenizer."""

# Naming conventions of BERT, RoBERTa/fairseq, SentencePiece and GPT-2, used only to infer the roles of
# a vocabulary that does not state them; the first name present in the vocabulary wins.
_CONVENTIONAL_NAMES = {
    "cls": ("[CLS]", "<s>"), "sep": ("[SEP]", "</s>"), "mask": ("[MASK]", "<mask>"),
    "pad": ("[PAD]", "<pad>", "<|endoftext|>"), "unk": ("[UNK]", "<unk>"),
    "bos": ("<s>", "<|endoftext|>"), "eos": ("</s>", "<|endoftext|>"),
}
_BUILTINS = {
    "kjv-wordpiece": {"kind": "wordpiece", "vocab_size": 8000, "lowercase": True, "min_frequency": 2},
    "kjv-bpe": {"kind": "bpe", "vocab_size": 8000, "lowercase": False, "min_frequency": 2},
}


class Tokenizer:
    """A Hugging Face `tokenizers.Tokenizer` plus the roles of its special tokens.

    `backend` does the work; `special_tokens` maps role -> token string for the roles that exist
    (a subset of `ROLES`). Padding and truncation of the backend are switched off: data processors
    decide lengths and add special tokens themselves. `target`, when set, tokenizes the target side
    of parallel data (machine translation); `vocab_size` and the roles are the source side's.
    Raises `UerError` if a role is unknown or its token is not in the vocabulary.
    """

    def __init__(self, backend: tokenizers.Tokenizer, special_tokens: dict[str, str],
                 target: "Tokenizer | None" = None, chat_template: str | None = None):
        unknown = sorted(set(special_tokens) - set(ROLES))
        if unknown:
            raise UerError(f"unknown special-token role(s) {unknown}; expected some of {list(ROLES)}")
        for role, token in special_tokens.items():
            if backend.token_to_id(token) is None:
                raise UerError(f"special token {token!r} (role {role}) is not in the vocabulary")
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.special_tokens = {role: special_tokens[role] for role in ROLES if role in special_tokens}
        self.target = target
        self.chat_template = chat_template  # Jinja source (tokenizer_config.json), see uer.data.chat

    @classmethod
    def load(cls, spec: str | Path, lowercase: bool | None = None) -> "Tokenizer":
        """Load a tokenizer from `spec`, one of:

        - ``builtin:<name>``: a tokenizer shipped with uer (``kjv-wordpiece``, ``kjv-bpe``);
        - a ``tokenizer.json``, or a directory holding one; roles come from a ``tokenizer_config.json``
          / ``special_tokens_map.json`` beside it (Hugging Face layout), else from conventional names;
          a directory's ``tgt_tokenizer/`` sub-directory, if any, becomes `target`, and its chat
          template (``chat_template.jinja`` or ``tokenizer_config.json``) `chat_template`;
        - ``VOCAB,MERGES``, or a byte-level BPE vocabulary (JSON object, or one token per line in id
          order) whose sibling named with "merges" for "vocab" exists (e.g. vocab.json + merges.txt);
        - a SentencePiece ``.model`` (unigram or BPE; needs the ``sentencepiece`` package);
        - any other file: a BERT WordPiece ``vocab.txt``, one token per line. `lowercase` applies to
          this form only; None detects it: uncased unless a non-bracketed token has an ASCII capital.

        Raises `UerError` naming the path and the problem: missing or empty file, invalid UTF-8,
        corrupt content, a directory without tokenizer.json, an unknown builtin, a WordPiece
        vocabulary without [UNK]/<unk>, or a role token missing from the vocabulary.
        """
        spec = str(spec)
        if spec.startswith("builtin:"):
            return cls._load_builtin(spec.removeprefix("builtin:"))
        path = Path(spec)
        if "," in spec and not path.exists():
            vocab, merges = spec.split(",", 1)
            return cls._finish(read_bpe(Path(vocab), Path(merges)), vocab)
        if path.is_dir():
            if (path / "tokenizer.json").is_dir():
                raise fail(path / "tokenizer.json", "is a directory, expected a file")
            if not (path / "tokenizer.json").is_file():
                raise fail(path, "directory holds no tokenizer.json")
            tokenizer = cls._from_json(path / "tokenizer.json")
            tokenizer.chat_template = read_chat_template(path)
            if (path / TARGET_DIR).is_dir():
                tokenizer.target = cls.load(path / TARGET_DIR)
            return tokenizer
        elif not path.exists():
            raise fail(path, "no such file or directory")
        if path.suffix == ".model":
            backend, roles = read_sentencepiece(path)
            return cls._finish(backend, path, roles)
        merges = next((p for p in merges_candidates(path) if p != path and p.is_file()), None)
        if merges is not None:
            return cls._finish(read_bpe(path, merges), path)
        if path.suffix == ".json":
            return cls._from_json(path)
        return cls._finish(read_wordpiece_vocab(path, lowercase), path)

    @classmethod
    def train(cls, files: list[str | Path], kind: str = "wordpiece", vocab_size: int = 8000,
              lowercase: bool = True, min_frequency: int = 2) -> "Tokenizer":
        """Train a new vocabulary on UTF-8 text `files` (blank lines skipped) with `tokenizers` trainers.

        kind="wordpiece": BERT pipeline (BertNormalizer with Chinese characters split, BertPreTokenizer,
        "##" continuation) with [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4 (Wu et al. 2016, Devlin et
        al. 2019). kind="bpe": GPT-2 byte-level BPE with <|endoftext|> at id 0 (Radford et al. 2019);
        `lowercase` adds a Lowercase normalizer. kind="chars": one token per character seen (speech
        transcripts, as wav2vec 2.0's CTC vocabularies), <s> <pad> </s> <unk> at ids 0-3 and "|" (a space)
        at 4 (`uer.data.tokenizer_formats.char_pipeline`; `vocab_size` and `min_frequency` do not apply).
        kind="sentencepiece": a SentencePiece unigram model as S2T's recipes train one
        (`uer.data.tokenizer_formats.train_sentencepiece`; `min_frequency` does not apply).
        `vocab_size` counts the special tokens; pairs seen
        fewer than `min_frequency` times are not merged. Deterministic: the same files and arguments
        give an identical tokenizer.json. Raises `UerError` for a missing, unreadable, non-UTF-8 or
        blank file, no files, or an unknown kind.
        """
        paths = [Path(f) for f in files]
        if not paths:
            raise UerError("tokenizer training: no corpus files given")
        for path in paths:
            if not path.is_file():
                raise UerError(f"corpus {path}: {'is a directory' if path.is_dir() else 'no such file'}")
        if kind == "wordpiece":
            backend = _train_wordpiece(paths, vocab_size, lowercase, min_frequency)
        elif kind == "bpe":
            backend = byte_level_pipeline(models.BPE(), lowercase)
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=["<|endoftext|>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
            backend.train_from_iterator(_corpus_batches(paths), trainer)
        elif kind == "chars":
            alphabet = {c for batch in _corpus_batches(paths) for line in batch for c in line}
            backend = char_pipeline(sorted({c.lower() for c in alphabet} if lowercase else alphabet), lowercase)
        elif kind == "sentencepiece":
            backend, roles = train_sentencepiece(paths, vocab_size, lowercase)
            return cls._finish(backend, paths[0], roles)
        else:
            raise UerError(f"tokenizer training: unknown kind {kind!r}; expected 'wordpiece', 'bpe', 'chars' or "
                           "'sentencepiece'")
        return cls._finish(backend, paths[0])

    def save(self, directory: str | Path, model_max_length: int | None = None) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`.

        The result loads with `Tokenizer.load(directory)` and offline with Hugging Face
        ``AutoTokenizer.from_pretrained(directory)`` (class PreTrainedTokenizerFast), which gives the
        same ids. `model_max_length` (tokens) is recorded for transformers when given, and so is
        the `chat_template` (in tokenizer_config.json, where transformers reads it). A `target`
        tokenizer is saved the same way into ``directory/tgt_tokenizer``.
        Raises `UerError` if the directory cannot be written.
        """
        out = Path(directory)
        roles = {f"{role}_token": token for role, token in self.special_tokens.items()}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **roles}
        if model_max_length is not None:
            config["model_max_length"] = model_max_length
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.backend.save(str(out / "tokenizer.json"))
            (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            (out / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise fail(out, f"cannot write ({e.strerror or e})") from None
        if self.target is not None:
            self.target.save(out / TARGET_DIR, model_max_length)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (the embedding table needs at least this many rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _role_id(self, role: str) -> int | None:
        token = self.special_tokens.get(role)
        return None if token is None else self.backend.token_to_id(token)

    cls_token_id = property(lambda self: self._role_id("cls"), doc="Id of the cls token, or None.")
    sep_token_id = property(lambda self: self._role_id("sep"), doc="Id of the sep token, or None.")
    mask_token_id = property(lambda self: self._role_id("mask"), doc="Id of the mask token, or None.")
    pad_token_id = property(lambda self: self._role_id("pad"), doc="Id of the pad token, or None.")
    unk_token_id = property(lambda self: self._role_id("unk"), doc="Id of the unk token, or None.")
    bos_token_id = property(lambda self: self._role_id("bos"), doc="Id of the bos token, or None.")
    eos_token_id = property(lambda self: self._role_id("eos"), doc="Id of the eos token, or None.")

    @property
    def all_special_ids(self) -> list[int]:
        """Sorted, distinct ids of all role tokens (never masked, never predicted as words)."""
        return sorted({self._role_id(role) for role in self.special_tokens})

    def token_to_id(self, token: str) -> int | None:
        """Id of `token`, or None if it is not in the vocabulary."""
        return self.backend.token_to_id(token)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, (N,) lists of variable length; no special tokens are added."""
        return [encoding.ids for encoding in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids` (a list of ints) through the backend's decoder."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the serialized backend, the roles, the target tokenizer's
        fingerprint and the chat template (if any): equal for equal tokenizers."""
        payload = self.backend.to_str() + "\n" + json.dumps(self.special_tokens, sort_keys=True)
        if self.target is not None:
            payload += "\ntarget " + self.target.fingerprint()
        if self.chat_template is not None:  # SFT datasets are rendered with it (uer.preprocess.llm_sft)
            payload += "\nchat_template " + self.chat_template
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def sentinel_ids(self, token_format: str | None = None) -> list[int]:
        """Ids of the sentinel tokens ``token_format.format(0)``, ``.format(1)``, ... up to the first
        one missing from the vocabulary, in sentinel order (T5's ``<extra_id_0>`` first). None tries
        `SENTINEL_FORMATS` in turn (``<extra_id_N>``, then ``extraN``); a vocabulary's own tokens can
        be named explicitly, e.g. ``"[unused{}]"``. Returns [] when there is none.
        """
        for fmt in (token_format,) if token_format else SENTINEL_FORMATS:
            ids = []
            while (token_id := self.backend.token_to_id(fmt.format(len(ids)))) is not None:
                ids.append(token_id)
            if ids:
                return ids
        return []

    def add_sentinels(self, count: int = 100) -> None:
        """Add ``<extra_id_0>`` ... ``<extra_id_{count-1}>`` as special tokens, numbered as in T5
        (Raffel et al. 2020; Hugging Face's T5Tokenizer): ``<extra_id_0>`` gets the highest new id.
        Raises `UerError` if the tokenizer already has ``<extra_id_N>`` tokens."""
        if self.sentinel_ids(SENTINEL_FORMATS[0]):
            raise UerError("tokenizer: already has <extra_id_N> sentinel tokens")
        self.backend.add_special_tokens([AddedToken(SENTINEL_FORMATS[0].format(i), special=True, normalized=False)
                                         for i in reversed(range(count))])

    def __repr__(self) -> str:
        target = f", target={self.target!r}" if self.target is not None else ""
        return f"Tokenizer(vocab_size={self.vocab_size}, special_tokens={self.special_tokens}{target})"

    # --- importers -----------------------------------------------------------------------------

    @classmethod
    def _finish(cls, backend: tokenizers.Tokenizer, source, roles: dict[str, str] | None = None) -> "Tokenizer":
        """Give an imported or trained `backend` conventional roles (overridden by `roles`), register
        them as special tokens, and add the BERT template ``cls A sep [B sep]`` for Hugging Face users."""
        roles = {**_infer_roles(backend), **(roles or {})}
        backend.add_special_tokens(sorted(set(roles.values()), key=backend.token_to_id))
        if "cls" in roles and "sep" in roles:
            cls_tok, sep_tok = roles["cls"], roles["sep"]
            backend.post_processor = processors.TemplateProcessing(
                single=f"{cls_tok} $A {sep_tok}", pair=f"{cls_tok} $A {sep_tok} $B:1 {sep_tok}:1",
                special_tokens=[(t, backend.token_to_id(t)) for t in dict.fromkeys([cls_tok, sep_tok])])
        return cls._checked(backend, roles, source)

    @classmethod
    def _checked(cls, backend: tokenizers.Tokenizer, roles: dict[str, str], source) -> "Tokenizer":
        try:
            return cls(backend, roles)
        except UerError as e:
            raise fail(source, str(e)) from None

    @classmethod
    def _load_builtin(cls, name: str) -> "Tokenizer":
        if name not in _BUILTINS:
            raise UerError(f"tokenizer builtin:{name}: unknown builtin; available: {', '.join(_BUILTINS)}")
        text = resources.files("uer.data.default").joinpath(f"{name}.json").read_text(encoding="utf-8")
        backend = tokenizers.Tokenizer.from_str(text)
        return cls(backend, _infer_roles(backend))

    @classmethod
    def _from_json(cls, path: Path) -> "Tokenizer":
        backend, roles = read_json(path)
        return cls._checked(backend, roles or _infer_roles(backend), path)

def train_tokenizer(name: str) -> Tokenizer:
    """Re-train the builtin tokenizer `name` ("kjv-wordpiece" or "kjv-bpe") from the shipped kjv.txt with
    its documented arguments; the result equals ``Tokenizer.load("builtin:" + name)``. Takes 1-2 s."""
    if name not in _BUILTINS:
        raise UerError(f"tokenizer builtin:{name}: unknown builtin; available: {', '.join(_BUILTINS)}")
    with resources.as_file(resources.files("uer.data.default").joinpath("kjv.txt")) as corpus:
        return Tokenizer.train([corpus], **_BUILTINS[name])


def _train_wordpiece(paths: list[Path], vocab_size: int, lowercase: bool, min_frequency: int) -> tokenizers.Tokenizer:
    """WordPiece training made deterministic. tokenizers' trainer numbers the "##x" continuation
    characters in hash-map order, which changes merge tie-breaks between runs (huggingface/tokenizers
    #1794); a first pass finds those characters, and the second pass fixes their ids by listing them
    in sorted order after the special tokens. The result is re-assembled without them as added tokens."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    probe = bert_pipeline(models.WordPiece(unk_token="[UNK]"), lowercase)
    probe.train_from_iterator(_corpus_batches(paths),
                              trainers.WordPieceTrainer(vocab_size=1, special_tokens=specials, show_progress=False))
    continuing = sorted(t for t in probe.get_vocab() if t.startswith("##") and len(t) == 3)
    trained = bert_pipeline(models.WordPiece(unk_token="[UNK]"), lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=specials + continuing, show_progress=False)
    trained.train_from_iterator(_corpus_batches(paths), trainer)
    return bert_pipeline(trained.model, lowercase)


def _infer_roles(backend: tokenizers.Tokenizer) -> dict[str, str]:
    """Roles from conventional token names present in the vocabulary."""
    roles = {}
    for role, names in _CONVENTIONAL_NAMES.items():
        name = next((n for n in names if backend.token_to_id(n) is not None), None)
        if name is not None:
            roles[role] = name
    return roles


def _corpus_batches(paths: list[Path], size: int = 1000):
    """Yield lists of up to `size` non-blank lines of UTF-8 text files; UerError for bad bytes or no text."""
    for path in paths:
        batch, seen = [], False
        try:
            with open(path, encoding="utf-8-sig") as f:  # a leading byte order mark is no text
                for line in f:
                    if line.strip():
                        batch.append(line.rstrip("\r\n"))
                        seen = True
                    if len(batch) == size:
                        yield batch
                        batch = []
        except UnicodeDecodeError as e:
            raise UerError(f"corpus {path}: invalid UTF-8 ({e.reason})") from None
        if not seen:
            raise UerError(f"corpus {path}: no text (the file is empty or blank)")
        if batch:
            yield batch

