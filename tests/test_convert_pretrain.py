"""Continued pretraining from a Hugging Face directory (``trainer.init_from``): it starts from the
converted weights and tokenizer, so its first loss is a trained model's, and a preset whose sizes
differ from the checkpoint's is an error that says what differs."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

from uer.config import compose_config
from uer.convert import convert
from uer.errors import UerError
from uer.train.checkpoint import list_checkpoints
from uer.train.run import prepare, pretrain

FAST = ["trainer.progress=false", "trainer.eval_every=0", "trainer.log_every=1", "trainer.save_every=0",
        "data.eval_samples=4", "data.num_proc=1", "data.seq_length=32", "data.batch_size=8"]


def train_losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train"]


def test_first_step_from_a_converted_checkpoint_is_a_trained_models(small_corpus, tmp_path):
    common = ["+model=bert_tiny", f"data.corpus={small_corpus}", *FAST]
    pretrain(compose_config(common + ["trainer.max_steps=10", "optim.lr=5e-3", f"trainer.output_dir={tmp_path / 'a'}"]))
    fresh = train_losses(tmp_path / "a")
    convert(list_checkpoints(tmp_path / "a")[-1], tmp_path / "hf")
    _, info = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info

    resumed = common + [f"trainer.init_from={tmp_path / 'hf'}", "trainer.max_steps=1", "optim.lr=1e-5",
                        f"trainer.output_dir={tmp_path / 'b'}"]
    trainer = prepare(compose_config(resumed))
    hf = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf")
    assert torch.equal(trainer.model.embedding.word.weight.detach(), hf.bert.embeddings.word_embeddings.weight)
    trainer.fit()
    (first,) = train_losses(tmp_path / "b")
    assert first < fresh[0] - 2.0, (first, fresh)  # far below the fresh model's first loss

    # the checkpoint decides the sizes: a bert_mini preset trains the 128-wide checkpoint ...
    other = [a.replace("bert_tiny", "bert_mini").replace(str(tmp_path / "b"), str(tmp_path / "c")) for a in resumed]
    assert prepare(compose_config(other)).model.embedding.word.weight.shape[1] == 128
    # ... but a preset of another structure is an error that says what differs
    with pytest.raises(UerError, match=r"another model config \(model.encoder.norm_position: post vs pre"):
        prepare(compose_config(other + ["model.encoder.norm_position=pre"]))
