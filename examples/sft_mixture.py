"""An instruction-tuning mixture from the shared real datasets, and a held-out book review test set.

    python examples/sft_mixture.py OUT_DIR [--data ../shared/data] [--per-task 2000] [--test 500] [--seed 0]

Writes two JSONL files of Alpaca records (``instruction``, ``input``, ``output``) for ``data=llm_sft``:

- ``OUT_DIR/train.jsonl``, shuffled: up to ``--per-task`` examples of each task, drawn with ``--seed``
  from the training splits:

  - book review sentiment (``datasets/book_review/train.tsv``): the review as the question, the
    label word 正面 (positive) or 负面 (negative) as the answer;
  - emotion of Weibo posts (``datasets/smp2020-ewect/{usual,virus}/train.tsv``): the label word of
    ``labels.json`` in Chinese (中性 愤怒 高兴 悲伤 恐惧 惊讶);
  - reading comprehension (``datasets/test_data/cmrc/{train,dev}.json``, SQuAD format): passage and
    question, the first answer;
  - English -> Chinese translation (``corpora/news-commentary-v13-en-zh_sampled.txt``);

- ``OUT_DIR/book_review_test.jsonl``: ``--test`` reviews drawn with ``--seed`` from
  ``datasets/book_review/test.tsv`` in the same format, never seen in training (a training review
  with the same text is left out), and ``OUT_DIR/book_review_test_prompts.txt``: the same
  conversations without their answers, one JSON list of messages per line, for ``uer-generate
  --chat --input``; ``examples/sft_accuracy.py`` scores the generated label words::

      uer-generate CKPT --chat --input OUT_DIR/book_review_test_prompts.txt --output answers.txt --max-new-tokens 8
      python examples/sft_accuracy.py OUT_DIR/book_review_test.jsonl answers.txt

Prints the number of records per task and the two paths. A missing dataset file is one ``error:`` line
(exit 2).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, as the other recipes

from uer.cli.common import run_command
from uer.data.sft import record_messages
from uer.errors import UerError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SENTIMENT = {"0": "负面", "1": "正面"}
EMOTION = {"neutral": "中性", "angry": "愤怒", "happy": "高兴", "sad": "悲伤", "fear": "恐惧", "surprise": "惊讶"}
BOOK_REVIEW = "判断这条书评的情感是正面还是负面，只回答“正面”或“负面”。"
WEIBO = "判断这条微博的情绪，只回答以下一个词：中性、愤怒、高兴、悲伤、恐惧、惊讶。"
READING = "阅读下面的文章，用文章中的原文回答问题。"
TRANSLATION = "把下面的英文翻译成中文。"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise UerError(f"{path}: cannot read ({err.strerror or err}); pass --data <the shared data folder>") from None


def _tsv(path: Path) -> list[dict]:
    """Rows of a ``label<TAB>text_a`` TSV with a header."""
    return list(csv.DictReader(_read(path).splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


def classification(path: Path, instruction: str, words: dict[str, str]) -> list[dict]:
    """Alpaca records of a ``label<TAB>text_a`` TSV: the text as input, ``words[label]`` as output."""
    return [{"instruction": instruction, "input": row["text_a"], "output": words[row["label"]]} for row in _tsv(path)]


def weibo(folder: Path) -> list[dict]:
    """The emotion records of one smp2020-ewect domain (its ``labels.json`` names the label ids)."""
    names = {item["label"]: EMOTION[item["label_desc"]]
             for item in map(json.loads, _read(folder / "labels.json").splitlines()) if item}
    return classification(folder / "train.tsv", WEIBO, names)


def reading(path: Path) -> list[dict]:
    """Reading-comprehension records of a SQuAD-format JSON: passage and question in, first answer out."""
    return [{"instruction": READING, "input": f"文章：{paragraph['context']}\n问题：{qa['question']}",
             "output": qa["answers"][0]["text"]}
            for article in json.loads(_read(path))["data"] for paragraph in article["paragraphs"]
            for qa in paragraph["qas"] if qa["answers"]]


def translation(path: Path) -> list[dict]:
    """English -> Chinese records of an ``english<TAB>chinese`` file."""
    pairs = (line.split("\t") for line in _read(path).splitlines())
    return [{"instruction": TRANSLATION, "input": en.strip(), "output": zh.strip()}
            for en, zh in (p for p in pairs if len(p) == 2) if en.strip() and zh.strip()]


def mixture(data: Path, per_task: int, seed: int, held_out: set[str]) -> dict[str, list[dict]]:
    """Task name -> at most ``per_task`` training records drawn with ``seed``; book reviews whose
    text is in ``held_out`` (the test reviews) are left out."""
    datasets = data / "datasets"
    reviews = classification(datasets / "book_review" / "train.tsv", BOOK_REVIEW, SENTIMENT)
    tasks = {
        "book_review": [record for record in reviews if record["input"] not in held_out],
        "smp2020-ewect": weibo(datasets / "smp2020-ewect" / "usual") + weibo(datasets / "smp2020-ewect" / "virus"),
        "cmrc": reading(datasets / "test_data" / "cmrc" / "train.json") + reading(datasets / "test_data" / "cmrc" / "dev.json"),
        "news-commentary": translation(data / "corpora" / "news-commentary-v13-en-zh_sampled.txt"),
    }
    return {name: random.Random(f"{seed}:{name}").sample(rows, min(per_task, len(rows))) for name, rows in tasks.items()}


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object per line, UTF-8, written to a temporary sibling and renamed."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    temporary.replace(path)


def main(argv: list[str]) -> int:
    """Parse ``argv`` and write the two files; returns 0 (2 on bad input, through ``run_command``)."""
    p = argparse.ArgumentParser(prog="examples/sft_mixture.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    p.add_argument("--per-task", type=int, default=2000, help="training records per task (at most)")
    p.add_argument("--test", type=int, default=500, help="held-out book reviews")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.per_task < 1 or args.test < 1:
        raise UerError("--per-task and --test: must be >= 1")
    test = classification(args.data / "datasets" / "book_review" / "test.tsv", BOOK_REVIEW, SENTIMENT)
    test = random.Random(f"{args.seed}:test").sample(test, min(args.test, len(test)))
    tasks = mixture(args.data, args.per_task, args.seed, {record["input"] for record in test})
    train = [record for rows in tasks.values() for record in rows]
    random.Random(args.seed).shuffle(train)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out_dir / "train.jsonl", train)
    write_jsonl(args.out_dir / "book_review_test.jsonl", test)
    prompts = args.out_dir / "book_review_test_prompts.txt"
    prompts.write_text("".join(json.dumps(record_messages(json.dumps(record), "test")[:-1], ensure_ascii=False) + "\n"
                               for record in test), encoding="utf-8")
    for name, rows in tasks.items():
        print(f"{name}: {len(rows)}")
    print(f"train: {args.out_dir / 'train.jsonl'} ({len(train)} records)")
    print(f"test: {args.out_dir / 'book_review_test.jsonl'} ({len(test)} records), prompts: {prompts}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
