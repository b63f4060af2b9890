"""The fine-tuning recipes' end (issue 18): the best checkpoint's dev scores come from the
evaluation that chose it, not from scoring dev once more, and ``finetune.test_limit`` scores only the
first examples of the test set."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples import finetune
from examples.classification import task as classification
from examples.qa import task as qa
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.train.callbacks import BestCheckpoint


def test_best_dev_scores_are_those_of_the_kept_evaluation(monkeypatch):
    evaluator = finetune.DevEvaluator(rows=None, pad_id=0, batch_size=2, head=None, score=None)
    calls = []

    def scored(*_args, **_kwargs):
        calls.append(1)
        return {"acc": 0.25}

    monkeypatch.setattr(finetune, "score_rows", scored)
    best = BestCheckpoint("acc")
    best.best = (4, 0.75)
    trainer = SimpleNamespace(callbacks=[best], step=8, model=None, cfg=SimpleNamespace(precision="fp32"))
    evaluator.scores = {4: {"acc": 0.75}, 8: {"acc": 0.5}}
    assert evaluator.best(trainer) == {"acc": 0.75} and not calls  # no second pass over dev
    best.best = (2, 0.9)  # kept before a resume: not seen by this process, so scored
    assert evaluator.best(trainer) == {"acc": 0.25} and calls == [1]


def test_test_limit_scores_the_first_examples(tmp_path, monkeypatch):
    tsv = tmp_path / "test.tsv"
    tsv.write_text("label\ttext_a\n" + "".join(f"{i % 2}\tverse {i}\n" for i in range(7)), encoding="utf-8")
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    task_cfg, model_cfg = OmegaConf.create({"seq_length": 16}), OmegaConf.create({})
    rows, gold = classification.load(str(tsv), tokenizer, task_cfg, model_cfg, ["0", "1"], limit=3)
    assert len(rows) == 3 and list(gold) == [0, 1, 0]
    assert len(classification.load(str(tsv), tokenizer, task_cfg, model_cfg, ["0", "1"])[0]) == 7
    monkeypatch.setattr(qa, "read_squad", lambda path, with_answers: [{"id": str(i)} for i in range(5)])
    monkeypatch.setattr(qa, "windows", lambda examples, *_: (examples, None))
    rows, (_, examples, _) = qa.load("x.json", tokenizer, OmegaConf.create({"max_answer_length": 4}), model_cfg,
                                     limit=2)
    assert [e["id"] for e in examples] == ["0", "1"]


def test_test_limit_must_not_be_negative():
    cfg, _ = finetune.compose_recipe(Path(finetune.__file__).parent / "classification", ["finetune.test_limit=-1"])
    with pytest.raises(UerError, match="finetune.test_limit=-1"):
        finetune.finetune_config(cfg)
