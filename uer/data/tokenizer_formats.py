"""Reading the vocabulary formats users bring (tokenizer.json, WordPiece vocab.txt, byte-level BPE
vocabulary + merges, SentencePiece models) into Hugging Face `tokenizers` backends, the BERT, GPT-2 and
character pipelines around a model, and SentencePiece training. :class:`uer.data.tokenizer.Tokenizer`
adds the roles of special tokens.

Every problem is a `UerError` naming the file (`fail`)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import sentencepiece
import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

from uer.errors import UerError

ROLES = ("cls", "sep", "mask", "pad", "unk", "bos", "eos")


def read_json(path: Path) -> tuple[tokenizers.Tokenizer, dict[str, str]]:
    """A ``tokenizer.json`` backend and the roles its Hugging Face configs beside it state ({} if none)."""
    text = _read_text(path)
    try:
        backend = tokenizers.Tokenizer.from_str(text)
    except Exception as e:
        raise fail(path, f"not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
    return backend, (config_roles(path.parent) if path.name == "tokenizer.json" else {})


def read_wordpiece_vocab(path: Path, lowercase: bool | None) -> tokenizers.Tokenizer:
    """A BERT ``vocab.txt`` (one token per line) as a WordPiece backend; ``lowercase`` None = detected."""
    tokens = _read_lines(path)
    vocab = {token: i for i, token in enumerate(tokens)}
    unk = next((t for t in ("[UNK]", "<unk>") if t in vocab), None)
    if unk is None:
        raise fail(path, "WordPiece vocabulary has no unknown token ([UNK] or <unk>)")
    if lowercase is None:
        lowercase = not any(_has_ascii_capital(t) for t in tokens)
    return bert_pipeline(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100), lowercase)


def read_bpe(vocab_path: Path, merges_path: Path) -> tokenizers.Tokenizer:
    """A byte-level BPE vocabulary (JSON object or one token per line) and its merges as a backend."""
    text = _read_text(vocab_path)
    if text.lstrip().startswith("{"):
        try:
            vocab = json.loads(text)
        except json.JSONDecodeError as e:
            raise fail(vocab_path, f"invalid JSON ({e.msg}, line {e.lineno})") from None
        if not all(isinstance(i, int) for i in vocab.values()):
            raise fail(vocab_path, "a JSON vocabulary must map tokens to integer ids")
    else:
        vocab = {token: i for i, token in enumerate(_read_lines(vocab_path))}
    merges = []
    for number, line in enumerate(_read_lines(merges_path), 1):
        if line and not line.startswith("#version"):
            pair = line.split(" ")
            if len(pair) != 2:
                raise fail(merges_path, f"line {number}: expected two tokens separated by one space")
            merges.append((pair[0], pair[1]))
    try:
        model = models.BPE(vocab, merges)
    except Exception as e:
        raise fail(merges_path, f"does not fit vocabulary {vocab_path} ({str(e).splitlines()[0]})") from None
    return byte_level_pipeline(model, lowercase=False)


def read_sentencepiece(path: Path) -> tuple[tokenizers.Tokenizer, dict[str, str]]:
    """Convert a SentencePiece model (Kudo & Richardson 2018) into an equivalent backend; returns it and
    the roles of its unk/bos/eos/pad pieces."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except Exception as e:  # ImportError, or protobuf's VersionError for a too old protobuf
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise fail(path, f"reading it needs the packages sentencepiece and protobuf ({problem})") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(_read_bytes(path))
    except Exception:
        raise fail(path, "not a SentencePiece model (cannot parse it)") from None
    if not proto.pieces:
        raise fail(path, "not a SentencePiece model (no pieces)")
    spec, norm, pieces = proto.trainer_spec, proto.normalizer_spec, proto.pieces
    if spec.model_type == spec.UNIGRAM:
        # float32 scores written with 9 digits: exact for float32 and stable through tokenizer.json
        scores = [(p.piece, float(f"{p.score:.9g}")) for p in pieces]
        model = models.Unigram(scores, spec.unk_id, spec.byte_fallback)
    elif spec.model_type == spec.BPE:
        vocab = {p.piece: i for i, p in enumerate(pieces)}
        model = models.BPE(vocab, _spm_merges(pieces, vocab), unk_token=pieces[spec.unk_id].piece,
                           fuse_unk=True, byte_fallback=spec.byte_fallback)
    else:
        raise fail(path, f"SentencePiece {spec.ModelType.Name(spec.model_type)} models are not supported")
    backend = tokenizers.Tokenizer(model)
    steps = [normalizers.Precompiled(norm.precompiled_charsmap)] if norm.precompiled_charsmap else []
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Strip(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")]
    backend.normalizer = normalizers.Sequence(steps + [normalizers.Prepend("\u2581")] * norm.add_dummy_prefix)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=spec.split_by_whitespace)
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
                                        + [decoders.Strip(" ", 1, 0)] * norm.add_dummy_prefix)
    # Like transformers' converter: user-defined and control pieces become added tokens, matched before
    # normalization (so spaces next to a user-defined piece may split differently from sentencepiece).
    backend.add_tokens([AddedToken(p.piece, normalized=False) for p in pieces if p.type == p.USER_DEFINED])
    backend.add_special_tokens([AddedToken(p.piece, normalized=False, special=True)
                                for p in pieces if p.type in (p.CONTROL, p.UNKNOWN)])
    ids = {"unk": spec.unk_id, "bos": spec.bos_id, "eos": spec.eos_id, "pad": spec.pad_id}
    return backend, {r: pieces[i].piece for r, i in ids.items() if 0 <= i < len(pieces)}


def train_sentencepiece(paths: list[Path], vocab_size: int, lowercase: bool) -> tuple[tokenizers.Tokenizer, dict]:
    """Train a SentencePiece unigram model (Kudo 2018) on text ``paths`` as fairseq's S2T recipes do
    (character coverage 1.0; <s> <pad> </s> <unk> at ids 0-3; NFKC, case-folded when ``lowercase``;
    at most ``vocab_size`` pieces, fewer when the text has fewer; one thread, so deterministic) and
    convert it with :func:`read_sentencepiece`. Raises UerError when sentencepiece cannot train."""
    with tempfile.TemporaryDirectory() as scratch:
        prefix = Path(scratch) / "spm"
        try:
            sentencepiece.SentencePieceTrainer.train(
                input=",".join(str(p) for p in paths), model_prefix=str(prefix), vocab_size=vocab_size,
                model_type="unigram", character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
                normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc", hard_vocab_limit=False,
                num_threads=1, minloglevel=2)
        except RuntimeError as e:
            raise UerError(f"tokenizer training: sentencepiece failed ({str(e).splitlines()[0]})") from None
        return read_sentencepiece(prefix.with_suffix(".model"))


def bert_pipeline(model, lowercase: bool) -> tokenizers.Tokenizer:
    """BERT's pipeline around a WordPiece `model`: clean text, split CJK characters, (lowercase and strip
    accents), split on whitespace and punctuation; "##" pieces are glued back when decoding."""
    backend = tokenizers.Tokenizer(model)
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return backend


def byte_level_pipeline(model, lowercase: bool) -> tokenizers.Tokenizer:
    """GPT-2's byte-level pipeline around a BPE `model`: every byte has a symbol, so nothing is unknown."""
    backend = tokenizers.Tokenizer(model)
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return backend


CHAR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
"""Special tokens of a character vocabulary, at ids 0-3: the order of fairseq dictionaries and
Speech2TextTokenizer (so S2T's positions start at pad + 1 = 2 as in Hugging Face's S2T); a CTC model
takes <pad> (1) as its blank, as Wav2Vec2ForCTC does."""
WORD_DELIMITER = "|"
"""The symbol of a space in a character vocabulary (wav2vec 2.0's word delimiter token)."""


def char_pipeline(characters: list[str], lowercase: bool) -> tokenizers.Tokenizer:
    """A character vocabulary for speech transcripts (as wav2vec 2.0 CTC models use): `CHAR_SPECIALS`,
    then `WORD_DELIMITER`, then ``characters`` in order; every character is a token, a run of spaces is "|",
    an unseen character is <unk>; decoding joins the characters and turns "|" back into spaces."""
    symbols = [c for c in characters if not c.isspace() and c != WORD_DELIMITER]
    vocab = {token: i for i, token in enumerate([*CHAR_SPECIALS, WORD_DELIMITER, *symbols])}
    backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    steps = [normalizers.Lowercase()] if lowercase else []
    backend.normalizer = normalizers.Sequence([*steps, normalizers.Strip(),
                                               normalizers.Replace(tokenizers.Regex(r"\s+"), WORD_DELIMITER)])
    backend.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    backend.decoder = decoders.Sequence([decoders.Replace(WORD_DELIMITER, " "), decoders.Fuse()])
    return backend


def _spm_merges(pieces, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges equivalent to a SentencePiece BPE model: a normal piece is the merge of any split of it
    into two known pieces, ranked by the piece's score (higher merges first)."""
    ranked = sorted((p for p in pieces if p.type == p.NORMAL), key=lambda p: -p.score)
    return [(p.piece[:k], p.piece[k:]) for p in ranked for k in range(1, len(p.piece))
            if p.piece[:k] in vocab and p.piece[k:] in vocab]


def config_roles(directory: Path) -> dict[str, str]:
    """Roles stated by Hugging Face's special_tokens_map.json / tokenizer_config.json (which wins),
    as strings or AddedToken dicts ``{"content": ...}``; {} when neither states any."""
    roles = {}
    for path in (directory / "special_tokens_map.json", directory / "tokenizer_config.json"):
        if not path.is_file():
            continue
        try:
            config = json.loads(_read_text(path))
        except json.JSONDecodeError as e:
            raise fail(path, f"invalid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(config, dict):
            raise fail(path, "expected a JSON object")
        for role in ROLES:
            value = config.get(f"{role}_token")
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                roles[role] = value
    return roles


def read_chat_template(directory: Path) -> str | None:
    """The Jinja chat template of a Hugging Face tokenizer directory: ``chat_template.jinja``
    (transformers 5 writes it there), else ``tokenizer_config.json``'s ``chat_template`` (a string,
    or a list of ``{"name", "template"}`` whose ``default`` entry is taken); None without one."""
    if (directory / "chat_template.jinja").is_file():
        return _read_text(directory / "chat_template.jinja")
    path = directory / "tokenizer_config.json"
    config = json.loads(_read_text(path)) if path.is_file() else {}  # config_roles has checked it
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    return template if isinstance(template, str) else None


def merges_candidates(path: Path) -> list[Path]:
    """Where the merges of a BPE vocabulary `path` would be: "vocab" -> "merges" in its name, .txt too."""
    if "vocab" not in path.name:
        return []
    name = path.name.replace("vocab", "merges")
    return [path.with_name(name), path.with_name(Path(name).stem + ".txt")]


def _has_ascii_capital(token: str) -> bool:
    bracketed = token[:1] + token[-1:] in ("[]", "<>")
    return not bracketed and any("A" <= c <= "Z" for c in token)


def fail(path, problem: str) -> UerError:
    return UerError(f"tokenizer {path}: {problem}")


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise fail(path, "is a directory, expected a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except OSError as e:
        raise fail(path, f"cannot read ({e.strerror or e})") from None
    if not data.strip():
        raise fail(path, "file is empty")
    return data


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` without a leading byte order mark (else it would be part of the
    first token, e.g. ``\\ufeff[PAD]``)."""
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise fail(path, f"invalid UTF-8 at byte {e.start}") from None


def _read_lines(path: Path) -> list[str]:
    """Lines of a one-entry-per-line file, without line ends; a final newline adds no entry."""
    lines = _read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
