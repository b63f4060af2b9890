"""Sequence labeling (NER) with BIO tags: ``text_a<TAB>label`` TSV files with a header, words and tags
separated by spaces (``../shared/data/datasets/test_data/msra_ner``); entity-level precision,
recall and F1 with the semantics of seqeval's default mode (CoNLL-2000 ``conlleval``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from examples.features import Collator, Rows, checkpoint_precision, distinct, predict, read_text, read_tsv
from uer.errors import UerError

log = logging.getLogger("uer")
TARGET = "token_cls"
HEAD = "token_cls"


def tag_names(cfg: DictConfig, train: list[dict]) -> list[str]:
    """Tags in id order: ``task.labels`` (a label2id JSON object, as msra_ner's label2id.json, or a
    list), else ``O`` then the sorted tags of the training set.

    Raises:
        UerError: an unreadable labels file (missing, a directory, not UTF-8, not a JSON object or
            list), a tag listed twice, or a label2id object whose ids repeat.
    """
    if cfg.task.get("labels"):
        path = cfg.task.labels

        def unique(pairs: list[tuple]) -> dict:  # json.loads alone keeps the last of two equal keys, silently
            distinct([key for key, _ in pairs], path)
            return dict(pairs)

        try:
            found = json.loads(read_text(path), object_pairs_hook=unique)
        except json.JSONDecodeError as e:
            raise UerError(f"task.labels={path}: not a JSON object or list ({e})") from None
        if isinstance(found, dict):
            ids = list(found.values())
            if not all(isinstance(i, int) for i in ids) or len(set(ids)) < len(ids):
                raise UerError(f"task.labels={path}: a label2id object needs a distinct integer id per tag, "
                               f"got {ids[:8]}")
            return sorted(found, key=found.get)
        if not isinstance(found, list):
            raise UerError(f"task.labels={path}: not a JSON object or list")
        return distinct([str(t) for t in found], path)
    tags = {t for row in train for t in row["label"].split()}
    return ["O", *sorted(tags - {"O"})]


def features(rows: list[dict], tokenizer, seq_length: int, tags: list[str] | None, path: str):
    """``[CLS] pieces [SEP]`` with the tag id on each word's first piece (-100 elsewhere), and for
    each row the position of each word's first piece (-1 for a word cut off by ``seq_length`` or
    without pieces: predicted ``O``).

    Raises:
        UerError: a line with another number of tags than words, or a tag outside the tag set.
    """
    words = [r["text_a"].split() for r in rows]
    encoded = tokenizer.backend.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
    ids = {t: i for i, t in enumerate(tags or [])}
    columns, first_pieces, lost = {"input_ids": [], "labels": []}, [], 0
    for number, (row, ws, enc) in enumerate(zip(rows, words, encoded), start=2):
        pieces = enc.ids[:seq_length - 2]
        where = [-1] * len(ws)
        for position, word in reversed(list(enumerate(enc.word_ids[:len(pieces)]))):
            where[word] = position + 1
        lost += sum(w < 0 for w in where)
        labels = [-100] * (len(pieces) + 2)
        if tags is not None:
            gold = row["label"].split()
            if len(gold) != len(ws):
                raise UerError(f"{path}:{number}: {len(ws)} words but {len(gold)} tags")
            for tag, position in zip(gold, where):
                if tag not in ids:
                    raise UerError(f"{path}:{number}: tag {tag!r} is not in the tag set {tags}")
                if position > 0:
                    labels[position] = ids[tag]
        columns["input_ids"].append([tokenizer.cls_token_id, *pieces, tokenizer.sep_token_id])
        columns["labels"].append(labels)
        first_pieces.append(where)
    if lost:
        log.warning("%s: %d words beyond task.seq_length=%d or without word pieces are tagged O", path, lost,
                    seq_length)
    if tags is None:
        del columns["labels"]
    return Rows(columns), first_pieces


def labels(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """The tag set (:func:`tag_names`), as labels and names."""
    tags = tag_names(cfg, read_tsv(cfg.task.train, ("text_a", "label")))
    return tags, tags


def load(path: str, tokenizer, task_cfg: DictConfig, model_cfg: DictConfig, tags: list[str] | None,
         limit: int = 0):
    """``(features, (first pieces, gold tag lists, tags))`` of a TSV file (its first ``limit`` rows
    if > 0); with ``tags`` None the file needs only ``text_a`` and there is no gold."""
    rows = read_tsv(path, ("text_a",) if tags is None else ("text_a", "label"))[:limit or None]
    feats, where = features(rows, tokenizer, task_cfg.seq_length, tags, path)
    return feats, (where, None if tags is None else [r["label"].split() for r in rows], tags)


def score(logits: list[np.ndarray], context) -> dict[str, float]:
    """Entity :func:`scores` of the decoded predictions."""
    where, gold, tags = context
    return scores(decode(logits, where, tags), gold)


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """``(type, first, last)`` word spans of the entities in a BIO tag sequence. An entity starts at
    ``B-X``, or at ``I-X`` after a tag that does not continue type X (seqeval's default, lenient
    mode), and ends before the next tag that is not ``I-X``."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        if start is not None and not (prefix == "I" and label == kind):
            spans.add((kind, start, i - 1))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, label
    return spans


def scores(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1: an entity counts when its type and both
    boundaries match exactly."""
    found = right = wanted = 0
    for p, g in zip(predicted, gold):
        pe, ge = entities(p), entities(g)
        found, wanted, right = found + len(pe), wanted + len(ge), right + len(pe & ge)
    precision, recall = right / found if found else 0.0, right / wanted if wanted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def decode(logits: list[np.ndarray], first_pieces: list[list[int]], tags: list[str]) -> list[list[str]]:
    """The tag of each word: the arg-max at its first piece, ``O`` for words without one."""
    return [[tags[int(row[p].argmax())] if p > 0 else "O" for p in where] for row, where in zip(logits, first_pieces)]


def head(model, hidden, batch):
    """Tag logits (B, S, C)."""
    return getattr(model.target, HEAD).logits(hidden, batch)


def infer(model, cfg: DictConfig, tokenizer, source: str, output: str | Path, batch_size: int,
          progress: bool = True) -> None:
    """Tag every line of the TSV ``source`` (``text_a`` with a header); write ``label`` lines of
    space-separated tags to ``output``."""
    tags = list(cfg.task.labels)
    rows, (where, _, _) = load(source, tokenizer, cfg.task, cfg.model, None)
    logits = predict(model, rows, Collator(tokenizer.pad_token_id or 0), batch_size, head, progress=progress,
                     precision=checkpoint_precision(cfg))
    with Path(output).open("w", encoding="utf-8") as f:
        f.write("label\n")
        f.writelines(" ".join(t) + "\n" for t in decode(logits, where, tags))
