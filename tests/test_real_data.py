"""Real user data (slow): MLM accuracy and LM loss improve well beyond their start on the shared
Chinese corpus with the Google Chinese vocabulary, as a user would run it."""
from __future__ import annotations

import json

import pytest

from uer.config import compose_config
from uer.train.run import pretrain

pytestmark = pytest.mark.slow


def records(out, split):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == split]


def test_bert_mini_mlm_accuracy_rises_on_clue(shared_data, tmp_path):
    out = tmp_path / "bert_mini"
    pretrain(compose_config([
        "+model=bert_mini", f"data.corpus={shared_data / 'corpora' / 'CLUECorpusSmall_bert_sampled.txt'}",
        f"data.tokenizer={shared_data / 'vocab' / 'google_zh_vocab.txt'}", "trainer.max_steps=300",
        "trainer.eval_every=100", "trainer.save_every=0", "trainer.progress=false", "optim.lr=5e-4",
        f"trainer.output_dir={out}"]))
    train, evals = records(out, "train"), records(out, "eval")
    # chance is 1/21128; within 300 steps the model reaches the unigram plateau (~5% accuracy,
    # MLM loss near the corpus's unigram entropy of 6.6 nats) from a start of ln(21128) = 10 nats
    assert train[0]["mlm/acc"] < 0.01
    assert evals[-1]["mlm/acc"] > 0.04
    assert evals[-1]["mlm/loss"] < train[0]["mlm/loss"] - 3.0
    assert evals[-1]["loss"] < evals[0]["loss"] < train[0]["loss"]


def test_gpt2_tiny_lm_loss_falls_on_clue(shared_data, tmp_path):
    out = tmp_path / "gpt2_tiny"
    pretrain(compose_config([
        "+model=gpt2_tiny", f"data.corpus={shared_data / 'corpora' / 'CLUECorpusSmall_sampled.txt'}",
        f"data.tokenizer={shared_data / 'vocab' / 'google_zh_vocab.txt'}", "trainer.max_steps=300",
        "trainer.eval_every=100", "trainer.save_every=0", "trainer.progress=false", "optim.lr=1e-3",
        f"trainer.output_dir={out}"]))
    train, evals = records(out, "train"), records(out, "eval")
    # from ln(21128) = 10 nats to the unigram plateau (6.6 nats) and beyond chance by far
    assert train[0]["loss"] > 9.0
    assert evals[-1]["loss"] < train[0]["loss"] - 2.5
    assert evals[-1]["lm/acc"] > 0.04
