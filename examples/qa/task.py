"""Extractive question answering on SQuAD-style JSON (``../shared/data/datasets/test_data/cmrc``):
contexts longer than the sequence are cut into overlapping windows (BERT's doc stride, Devlin et
al. 2019, §4.2), the best span over all windows of a question is mapped back to the context's
characters, and answers score by exact match and F1 (SQuAD's metric over CMRC's mixed
segmentation: CJK characters one by one, other text by whitespace)."""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from examples.features import Collator, Rows, checkpoint_precision, predict, read_text, segments
from uer.errors import UerError

log = logging.getLogger("uer")
TARGET = "span"
HEAD = "span"


@dataclass
class Window:
    """Where a window's context tokens sit: ``first`` is the position of its first context token in
    the input, ``offsets`` the (start, end) characters of each context token in the context."""

    example: int
    first: int
    offsets: list[tuple[int, int]]


def read_squad(path: str | Path, with_answers: bool = True) -> list[dict]:
    """``{"id", "question", "context", "answers": [(text, start char)]}`` per question.

    A training answer whose text is not at its ``answer_start`` in the context is dropped with the
    question, counted and logged (never trained on at a wrong place).

    Raises:
        UerError: a missing or unreadable file, or a file that is not SQuAD-style JSON.
    """
    try:
        data = json.loads(read_text(path))["data"]
        examples, skipped = [], []
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    context = paragraph["context"]
                    answers = [(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])]
                    if with_answers and (not answers or not all(context[s:s + len(t)] == t for t, s in answers)):
                        skipped.append(qa["id"])
                        continue
                    examples.append({"id": qa["id"], "question": qa["question"], "context": context,
                                     "answers": answers})
    except UerError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UerError(f"{path}: not SQuAD-style JSON ({type(e).__name__}: {e})") from None
    if skipped:
        log.warning("%s: skipped %d of %d questions without an answer at its answer_start in the context "
                    "(first: %s)", path, len(skipped), len(skipped) + len(examples), skipped[0])
    return examples


def windows(examples: list[dict], tokenizer, task_cfg: DictConfig, num_segments: int, with_answers: bool):
    """Features: ``[CLS] question [SEP] context window [SEP]``; windows start every
    ``task.doc_stride`` context tokens. With answers, ``start_positions``/``end_positions`` point at
    the first answer's tokens, or both at 0 ([CLS]) in a window that does not hold it whole."""
    questions = [q[:task_cfg.max_query_length] for q in tokenizer.encode_batch([e["question"] for e in examples])]
    contexts = tokenizer.backend.encode_batch([e["context"] for e in examples], add_special_tokens=False)
    columns = {"input_ids": [], "token_type_ids": [], "start_positions": [], "end_positions": []}
    meta = []
    for index, (example, question, context) in enumerate(zip(examples, questions, contexts)):
        room = task_cfg.seq_length - len(question) - 3
        if room < 1:
            raise UerError(f"task.seq_length={task_cfg.seq_length} leaves no room for the context after a "
                           f"{len(question)}-token question; raise it or lower task.max_query_length")
        span = None
        if with_answers:
            text, start = example["answers"][0]
            tokens = [i for i, (a, b) in enumerate(context.offsets) if a < start + len(text) and b > start]
            span = (tokens[0], tokens[-1]) if tokens else None
        begin = 0
        while True:
            end = min(begin + room, len(context.ids))
            first = len(question) + 2
            columns["input_ids"].append([tokenizer.cls_token_id, *question, tokenizer.sep_token_id,
                                         *context.ids[begin:end], tokenizer.sep_token_id])
            second = 1 if num_segments > 1 else 0
            columns["token_type_ids"].append([0] * first + [second] * (end - begin + 1))
            inside = span is not None and begin <= span[0] and span[1] < end
            columns["start_positions"].append(span[0] - begin + first if inside else 0)
            columns["end_positions"].append(span[1] - begin + first if inside else 0)
            meta.append(Window(index, first, context.offsets[begin:end]))
            if end >= len(context.ids):
                break
            begin += task_cfg.doc_stride
    if not num_segments:
        del columns["token_type_ids"]
    if not with_answers:
        del columns["start_positions"], columns["end_positions"]
    return Rows(columns), meta


def best_answers(logits: list[np.ndarray], meta: list[Window], examples: list[dict], max_answer_length: int = 30,
                 top: int = 20) -> list[str]:
    """The answer text of each example: over all of its windows, the context span (start ≤ end,
    at most ``max_answer_length`` tokens, among the ``top`` starts and ends of each window) with the
    largest start + end logit, cut from the context by character offsets; "" if none."""
    best = [(-np.inf, "") for _ in examples]
    for row, window in zip(logits, meta):
        n = len(window.offsets)
        start, end = row[window.first:window.first + n, 0], row[window.first:window.first + n, 1]
        for s in np.argsort(-start)[:top]:
            for e in np.argsort(-end)[:top]:
                if s <= e < s + max_answer_length and start[s] + end[e] > best[window.example][0]:
                    context = examples[window.example]["context"]
                    best[window.example] = (start[s] + end[e],
                                            context[window.offsets[s][0]:window.offsets[e][1]])
    return [text for _, text in best]


def _tokens(text: str) -> list[str]:
    """Lower-cased, punctuation-free tokens: each CJK character alone, other runs split on spaces."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+", text)


def scores(predicted: list[str], gold: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 (bag-of-tokens overlap), each the best over an example's gold answers,
    averaged over examples, in percent."""
    em = f1 = 0.0
    for p, answers in zip(predicted, gold):
        pt = _tokens(p)
        em += max(float(pt == _tokens(a)) for a in answers)
        best = 0.0
        for a in answers:
            common = sum((Counter(pt) & Counter(_tokens(a))).values())
            if common:
                precision, recall = common / len(pt), common / len(_tokens(a))
                best = max(best, 2 * precision * recall / (precision + recall))
        f1 += best
    n = max(len(predicted), 1)
    return {"em": 100 * em / n, "f1": 100 * f1 / n}


def labels(cfg: DictConfig) -> tuple[None, None]:
    """Question answering has no label set."""
    return None, None


def load(path: str, tokenizer, task_cfg: DictConfig, model_cfg: DictConfig, _labels=None, limit: int = 0,
         with_answers=True):
    """``(window features, (windows, examples))`` of a SQuAD-style JSON file (its first ``limit``
    questions if > 0)."""
    examples = read_squad(path, with_answers)[:limit or None]
    rows, meta = windows(examples, tokenizer, task_cfg, segments(model_cfg), with_answers)
    return rows, (meta, examples, task_cfg.max_answer_length)


def score(logits: list[np.ndarray], context) -> dict[str, float]:
    """EM and F1 of the best spans against all gold answers."""
    meta, examples, max_answer_length = context
    predicted = best_answers(logits, meta, examples, max_answer_length)
    return scores(predicted, [[t for t, _ in e["answers"]] for e in examples])


def head(model, hidden, batch):
    """Start and end logits (B, S, 2)."""
    return getattr(model.target, HEAD).logits(hidden, batch)


def infer(model, cfg: DictConfig, tokenizer, source: str, output: str | Path, batch_size: int,
          progress: bool = True) -> None:
    """Answer every question of the SQuAD-style JSON ``source`` (answers not needed); write
    ``{question id: answer}`` as JSON to ``output``."""
    rows, (meta, examples, length) = load(source, tokenizer, cfg.task, cfg.model, with_answers=False)
    logits = predict(model, rows, Collator(tokenizer.pad_token_id or 0), batch_size, head, progress=progress,
                     precision=checkpoint_precision(cfg))
    answers = dict(zip((e["id"] for e in examples), best_answers(logits, meta, examples, length)))
    Path(output).write_text(json.dumps(answers, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
