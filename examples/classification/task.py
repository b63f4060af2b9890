"""Text classification, single sentence or sentence pair: ``label<TAB>text_a[<TAB>text_b]`` TSV files
with a header (``../shared/data/datasets/book_review``, ``smp2020-ewect``); accuracy and macro-F1."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from examples.features import (Collator, Rows, checkpoint_precision, distinct, predict, read_text, read_tsv, segments,
                               with_specials)
from uer.errors import UerError

TARGET = "seq_cls"
HEAD = "cls"


def label_names(cfg: DictConfig, train: list[dict]) -> tuple[list[str], list[str]]:
    """``(labels as written in the TSV, display names)`` in id order: from ``task.labels`` (a JSON
    list, or JSON lines ``{"label": "0", "label_desc": "neutral"}`` as smp2020-ewect's labels.json),
    else the sorted distinct labels of the training set (numerically when all are integers).

    Raises:
        UerError: an unreadable labels file (missing, a directory, not UTF-8, not JSON), an entry
            without a label, or a label listed twice.
    """
    if cfg.task.get("labels"):
        path = Path(cfg.task.labels)
        text = read_text(path)
        try:
            items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                            if x.strip()]
            labels = [str(x["label"]) if isinstance(x, dict) else str(x) for x in items]
            names = [str(x.get("label_desc", x["label"])) if isinstance(x, dict) else str(x) for x in items]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UerError(f"task.labels={path}: not a JSON list or JSON lines of {{\"label\": ...}} "
                           f"({type(e).__name__}: {e})") from None
        return distinct(labels, path), names
    found = {row["label"] for row in train}
    labels = sorted(found, key=int) if all(x.lstrip("-").isdigit() for x in found) else sorted(found)
    return labels, labels


def features(rows: list[dict], tokenizer, seq_length: int, model_cfg: DictConfig, labels: list[str] | None,
             path: str) -> Rows:
    """Token ids (``[CLS] a [SEP] (b [SEP])``, cut to ``task.seq_length``) and label ids.

    Raises:
        UerError: a label outside the label set (the message names the file, line and label).
    """
    a = tokenizer.encode_batch([r["text_a"] for r in rows])
    b = tokenizer.encode_batch([r["text_b"] for r in rows]) if rows and "text_b" in rows[0] else [None] * len(rows)
    n_seg = segments(model_cfg)
    encoded = [with_specials(tokenizer, x, y, seq_length, n_seg) for x, y in zip(a, b)]
    columns = {k: [e[k] for e in encoded] for k in (encoded[0] if encoded else {"input_ids": []})}
    if labels is not None:
        ids = {label: i for i, label in enumerate(labels)}
        for number, row in enumerate(rows, start=2):
            if row["label"] not in ids:
                raise UerError(f"{path}:{number}: label {row['label']!r} is not in the label set {labels}")
        columns["labels"] = [ids[r["label"]] for r in rows]
    return Rows(columns)


def labels(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Labels and their names (see :func:`label_names`) from ``task.labels`` or ``task.train``."""
    return label_names(cfg, read_tsv(cfg.task.train, ("label", "text_a")))


def load(path: str, tokenizer, task_cfg: DictConfig, model_cfg: DictConfig, labels: list[str] | None,
         limit: int = 0):
    """``(features, gold label ids or None)`` of a TSV file (its first ``limit`` rows if > 0); with
    ``labels`` None the file needs only text columns (test_nolabel)."""
    required = ("text_a",) if labels is None else ("label", "text_a")
    examples = read_tsv(path, required, ("text_b",))[:limit or None]
    rows = features(examples, tokenizer, task_cfg.seq_length, model_cfg, labels, path)
    return rows, None if labels is None else np.array(rows.columns["labels"])


def score(logits: list[np.ndarray], gold: np.ndarray) -> dict[str, float]:
    """:func:`scores` of the arg-max predictions."""
    return scores(np.argmax(np.stack(logits), -1), gold)


def scores(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (the unweighted mean over the classes that occur in ``gold`` or
    ``predicted`` of per-class F1 = 2PR / (P + R), 0 when P + R = 0)."""
    f1 = []
    for c in np.union1d(gold, predicted):
        tp = np.sum((predicted == c) & (gold == c))
        p, r = tp / max(np.sum(predicted == c), 1), tp / max(np.sum(gold == c), 1)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"acc": float(np.mean(predicted == gold)) if len(gold) else 0.0, "macro_f1": float(np.mean(f1))}


def head(model, hidden, batch):
    """Class logits (B, C)."""
    return getattr(model.target, HEAD).logits(hidden, batch)


def write_predictions(path: str | Path, logits: list[np.ndarray], names: list[str]) -> None:
    """``label<TAB>prob`` per input line: the predicted label name and its softmax probability."""
    with Path(path).open("w", encoding="utf-8") as f:
        f.write("label\tprob\n")
        for row in logits:
            p = np.exp(row - row.max())
            p /= p.sum()
            f.write(f"{names[int(p.argmax())]}\t{p.max():.4f}\n")


def infer(model, cfg: DictConfig, tokenizer, source: str, output: str | Path, batch_size: int,
          progress: bool = True) -> None:
    """Predict the label of every line of the TSV ``source`` (``text_a[<TAB>text_b]`` with a header)
    with a fine-tuned ``model`` whose checkpoint config is ``cfg``; write ``output``."""
    rows, _ = load(source, tokenizer, cfg.task, cfg.model, None)
    logits = predict(model, rows, Collator(tokenizer.pad_token_id or 0), batch_size, head, progress=progress,
                     precision=checkpoint_precision(cfg))
    write_predictions(output, logits, list(cfg.task.names))
