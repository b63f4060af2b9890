"""The one training loop: every preset trains, a tiny model overfits, resume is bit-identical,
accumulation equals one large batch."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from uer.config import compose_config, presets, resolve
from uer.models import build_model
from uer.train.run import prepare, pretrain

FAST = ["trainer.progress=false", "trainer.eval_every=0", "data.eval_samples=4", "data.num_proc=1"]


def run_args(preset: str, corpus: Path, out: Path, steps: int, *extra: str) -> list[str]:
    args = [f"+model={preset}", f"trainer.output_dir={out}", f"trainer.max_steps={steps}", *FAST]
    if compose_config([f"+model={preset}"]).data.processor != "image":
        args += [f"data.corpus={corpus}", "data.seq_length=32"]
    return args + list(extra)


@pytest.mark.parametrize("preset", presets())
def test_every_preset_trains_three_steps(preset, small_corpus, tmp_path):
    base = preset.endswith("_base") or preset in ("gpt2", "vit_base_16")
    args = run_args(preset, small_corpus, tmp_path / "run", 3, "data.batch_size=2" if base else "data.batch_size=8",
                    "trainer.log_every=1", "trainer.save_every=0")
    metrics = pretrain(compose_config(args))
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"split": "train"' in line]) == 3
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    assert {"model.safetensors", "config.yaml", "state"} <= {p.name for p in checkpoint.iterdir()}
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    cfg = resolve(compose_config(["+model=bert_tiny", "model.vocab_size=60", "model.dropout=0"]))
    model = build_model(cfg.model)
    ids = torch.randint(5, 60, (8, 16))
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    masked = ids.clone()
    masked[:, 3::4] = 4
    batch = {"input_ids": masked, "labels": labels, "token_type_ids": torch.zeros_like(ids),
             "next_sentence_label": torch.tensor([0, 1] * 4)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(batch).loss.item()
    for _ in range(150):
        out = model(batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = model(batch)
    assert out.loss.item() < 0.05 * first
    correct, total = out.metrics["mlm/acc"]
    assert correct == total


def weights(out: Path) -> dict[str, torch.Tensor]:
    last = sorted((out / "checkpoints").iterdir())[-1]
    return load_file(last / "model.safetensors")


def test_resume_is_bit_identical(small_corpus, tmp_path):
    def args(out):
        return run_args("bert_tiny", small_corpus, out, 8, "data.batch_size=4", "trainer.save_every=4")

    pretrain(compose_config(args(tmp_path / "straight")))

    interrupted = prepare(compose_config(args(tmp_path / "resumed")))
    interrupted.fit(until=4)
    assert interrupted.step == 4
    resumed = prepare(compose_config(args(tmp_path / "resumed") + ["trainer.resume=auto"]))
    assert resumed.step == 4 and resumed.train_loader.position == 4
    resumed.fit()
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_accumulation_equals_one_large_batch(small_corpus, tmp_path):
    common = ["model.dropout=0", "trainer.grad_clip=0", "optim=sgd", "optim.lr=0.5", "optim.momentum=0"]
    pretrain(compose_config(run_args("bert_tiny", small_corpus, tmp_path / "one", 2, "data.batch_size=8", *common)))
    pretrain(compose_config(run_args("bert_tiny", small_corpus, tmp_path / "two", 2, "data.batch_size=4",
                                     "trainer.accumulation_steps=2", *common)))
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # the runs really trained: weights left their initial values
    vocab = a["embedding.word.weight"].shape[0]
    init = build_model(resolve(compose_config(["+model=bert_tiny", f"model.vocab_size={vocab}"])).model)
    moved = sum(not torch.equal(a[k], v) for k, v in init.state_dict().items() if k in a)
    assert moved > 10


def test_output_dir_with_a_run_needs_resume(small_corpus, tmp_path):
    args = run_args("bert_tiny", small_corpus, tmp_path / "run", 2, "data.batch_size=4")
    pretrain(compose_config(args))
    from uer.errors import UerError
    with pytest.raises(UerError, match="trainer.resume=auto"):
        prepare(compose_config(args))
    with pytest.raises(UerError, match="another model config"):
        prepare(compose_config(args + ["trainer.resume=auto", "model.ffn_dim=256"]))


@pytest.mark.slow
def test_compile_option_really_compiles(small_corpus, tmp_path):
    from torch._dynamo.utils import counters

    counters.clear()
    args = run_args("bert_tiny", small_corpus, tmp_path / "compiled", 3, "data.batch_size=4", "model.dropout=0",
                    "trainer.log_every=1")
    compiled = pretrain(compose_config(args + ["trainer.compile=true"]))
    assert counters["frames"]["ok"] > 0  # dynamo captured graphs (the FLOP-counted first step runs eager)
    eager = pretrain(compose_config(run_args("bert_tiny", small_corpus, tmp_path / "eager", 3, "data.batch_size=4",
                                             "model.dropout=0", "trainer.log_every=1")))
    assert abs(compiled["loss"] - eager["loss"]) < 1e-3
