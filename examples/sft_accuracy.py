"""Accuracy of generated label words: answers of an instruction-tuned model to classification records.

    python examples/sft_accuracy.py TEST.jsonl ANSWERS.txt

``TEST.jsonl`` holds Alpaca records whose ``output`` is a label word (``examples/sft_mixture.py``
writes ``book_review_test.jsonl``); ``ANSWERS.txt`` the generated answers, one line per record in
the same order (``uer-generate CKPT --chat --input <the prompts file> --output ANSWERS.txt``). An
answer predicts the label word (one of the distinct ``output`` values) that occurs first in it,
whitespace ignored (a WordPiece tokenizer such as BERT's Chinese vocabulary decodes 正面 as "正 面");
an answer with none of them is wrong. Prints ``accuracy``, ``answered`` (the share of answers holding
a label word) and ``records``, one ``name value`` line each. Mismatched line counts or a bad record
are one ``error:`` line (exit 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, as the other recipes

from uer.cli.common import run_command
from uer.errors import UerError


def _squeezed(text: str) -> str:
    """``text`` without whitespace."""
    return "".join(text.split())


def predicted(answer: str, words: list[str]) -> str | None:
    """The label word of ``words`` that occurs first in ``answer``, whitespace ignored in both
    (None: none occurs)."""
    answer = _squeezed(answer)
    found = [(answer.find(_squeezed(word)), word) for word in words if _squeezed(word) in answer]
    return min(found)[1] if found else None


def score(labels: list[str], answers: list[str]) -> dict[str, float]:
    """``accuracy`` and ``answered`` (fractions) of ``answers`` against the label words ``labels``."""
    words = sorted(set(labels))
    guesses = [predicted(answer, words) for answer in answers]
    return {"accuracy": sum(g == y for g, y in zip(guesses, labels)) / len(labels),
            "answered": sum(g is not None for g in guesses) / len(labels), "records": len(labels)}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UerError(f"{path}: cannot read as UTF-8 text ({err})") from None


def _label(line: str, where: str) -> str:
    """The ``output`` of one JSONL record; UerError naming ``where`` when there is none."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("output"), str):
        raise UerError(f'{where}: not a record with a string "output"')
    return record["output"]


def main(argv: list[str]) -> int:
    """Parse ``argv``, read both files, print the scores; returns 0 (2 on bad input, through ``run_command``)."""
    p = argparse.ArgumentParser(prog="examples/sft_accuracy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("test", type=Path, help="Alpaca records with label words as outputs")
    p.add_argument("answers", type=Path, help="generated answers, one line per record")
    args = p.parse_args(argv)
    labels = [_label(line, f"{args.test}: line {number}") for number, line in enumerate(_lines(args.test), 1)]
    answers = _lines(args.answers)
    if not labels or len(answers) != len(labels):
        raise UerError(f"{args.answers}: {len(answers)} answers for {len(labels)} records in {args.test}")
    for name, value in score(labels, answers).items():
        print(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
