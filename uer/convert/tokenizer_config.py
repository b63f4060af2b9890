"""The ``tokenizer_config.json`` of an export: which fields the tokenizer returns and which
``transformers`` class loads it.

:meth:`uer.data.tokenizer.Tokenizer.save` names the generic ``PreTrainedTokenizerFast``, which
loads any ``tokenizer.json`` exactly. An export names the family's class instead (``BertTokenizerFast``,
``GPT2TokenizerFast`` ..., :attr:`uer.convert.spec.Family.tokenizer_class`), as published models do,
but only where that class gives the same ids: since transformers 5 a family class rebuilds parts
of the pipeline (normalizer, pre-tokenizer, post-processor) from its own assumptions, so a BERT
model trained with a byte-level BPE vocabulary keeps the generic class.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from uer.data.tokenizer import Tokenizer
from uer.errors import UerError

log = logging.getLogger("uer")

GENERIC = "PreTrainedTokenizerFast"
PROBES = ("In the beginning God created the heaven and the earth.",
          "Hello, WORLD!  It's 2024: naïve café, 東京 — ok?\tyes",
          "the end")
"""Texts an exported tokenizer must encode alike under the family's class and the generic one:
cased words, digits, punctuation, accents, CJK, runs of spaces and a tab."""


def _config_path(directory: Path) -> Path:
    return Path(directory) / "tokenizer_config.json"


def _write(directory: Path, **values) -> None:
    path = _config_path(directory)
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(values)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _behaviour(tokenizer) -> tuple:
    """What a user sees of the transformers ``tokenizer``: its size, ids of each probe (with and
    without special tokens, and as a pair, with the pair's segment ids if it returns them), and the
    decoded ids."""
    single = [tokenizer(text)["input_ids"] for text in PROBES]
    pair = tokenizer(PROBES[0], PROBES[1])
    return (len(tokenizer), single, [tokenizer(t, add_special_tokens=False)["input_ids"] for t in PROBES],
            pair["input_ids"], pair.get("token_type_ids"), [tokenizer.decode(ids) for ids in single])


def _expected(tokenizer: Tokenizer, segments: bool) -> tuple:
    """:func:`_behaviour` as uer's ``tokenizer`` (its ``tokenizers`` backend, the saved
    tokenizer.json) defines it; pair segment ids only if the export returns them (``segments``)."""
    backend = tokenizer.backend
    single = [backend.encode(text).ids for text in PROBES]
    pair = backend.encode(PROBES[0], PROBES[1])
    return (tokenizer.vocab_size, single, [backend.encode(t, add_special_tokens=False).ids for t in PROBES],
            pair.ids, pair.type_ids if segments else None, [backend.decode(ids, skip_special_tokens=False) for ids in single])


def finish_tokenizer_config(directory: Path, tokenizer: Tokenizer, input_names: tuple[str, ...],
                            tokenizer_class: str | None) -> str:
    """Complete the ``tokenizer_config.json`` that ``tokenizer.save`` wrote into the export
    ``directory`` (which already holds its ``config.json``): ``model_input_names`` = ``input_names``
    (so BERT-style exports return ``token_type_ids``), and ``tokenizer_class`` = the family's
    ``tokenizer_class`` if ``transformers.AutoTokenizer`` then loads a tokenizer that behaves as
    ``tokenizer`` does on :data:`PROBES` (same size, ids, pair segments, decoding); else it stays
    generic and the log says why. Returns the class written.

    Raises:
        UerError: the saved ``tokenizer_config.json`` cannot be read or written.
    """
    # lazy: transformers is imported only when converting (uer.convert loads with training), as in api.py
    from transformers import AutoTokenizer  # lazy

    try:
        _write(directory, model_input_names=list(input_names))
        if tokenizer_class is None:
            return GENERIC
        expected = _expected(tokenizer, "token_type_ids" in input_names)
        _write(directory, tokenizer_class=tokenizer_class)
        try:
            loaded = AutoTokenizer.from_pretrained(str(directory))
            same = type(loaded).__name__ not in (GENERIC, "TokenizersBackend") and _behaviour(loaded) == expected
        except Exception as e:  # noqa: BLE001 - any failure of the family class means: keep the generic one
            log.info("tokenizer: %s cannot load this vocabulary (%s); keeping %s", tokenizer_class,
                     " ".join(str(e).split())[:200], GENERIC)
            same = None
        if same is False:
            log.info("tokenizer: %s would encode differently from the checkpoint's tokenizer; keeping %s",
                     tokenizer_class, GENERIC)
        if not same:
            _write(directory, tokenizer_class=GENERIC)
            return GENERIC
        return tokenizer_class
    except (OSError, ValueError) as e:
        raise UerError(f"{_config_path(directory)}: cannot update ({e})") from None
