"""The one training loop: a tiny model overfits, resume is bit-identical, accumulation equals one
large batch (every preset's training: test_presets_train.py)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from runs import run_args
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.models import build_model
from uer.train.run import prepare, pretrain


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


def test_gradient_checkpointing_gives_the_same_gradients_with_dropout():
    """Recomputed layers must draw the same dropout masks (checkpoint restores the RNG state)."""
    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)
        cfg = resolve(compose_config(["+model=bert_tiny", "model.vocab_size=60",
                                      f"model.encoder.gradient_checkpointing={str(recompute).lower()}"]))
        model = build_model(cfg.model).train()
        assert model.encoder.gradient_checkpointing is recompute
        ids = torch.randint(5, 60, (4, 16))
        labels = torch.where(torch.arange(16) % 4 == 3, ids, -100)
        batch = {"input_ids": ids, "labels": labels, "token_type_ids": torch.zeros_like(ids),
                 "next_sentence_label": torch.tensor([0, 1, 0, 1])}
        torch.manual_seed(1)
        model(batch).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


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


def poison_step(trainer, bad_step: int) -> None:
    """Make the loss of the first try of optimizer step ``bad_step`` (1-based) NaN, as a numerical
    fault would (once: a skipped step is retried with the next batch)."""
    forward, hit = trainer.forward, []

    def poisoned(batch):
        out = forward(batch)
        if trainer.step + 1 == bad_step and not hit:
            hit.append(True)
            for term in out.terms.values():
                term.loss_sum = term.loss_sum * float("nan")
        return out

    trainer.forward = poisoned


def test_nonfinite_step_is_skipped_and_counted(small_corpus, tmp_path, caplog):
    args = run_args("bert_tiny", small_corpus, tmp_path / "run", 5, "data.batch_size=4", "trainer.log_every=1",
                    "trainer.on_nonfinite=skip")
    trainer = prepare(compose_config(args))
    poison_step(trainer, 3)
    with caplog.at_level("WARNING", logger="uer"):
        metrics = trainer.fit()
    assert trainer.step == 5 and trainer.skipped_steps == 1 and trainer.scheduler.last_epoch == 5
    assert "step 3: non-finite loss or gradient norm; step skipped (1 so far" in caplog.text
    assert metrics["skipped_steps"] == 1 and math.isfinite(metrics["loss"])
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())
    assert "NaN" not in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_nonfinite_step_stops_and_keeps_the_last_good_checkpoint(small_corpus, tmp_path):
    from uer.train.trainer import NonFiniteError

    out = tmp_path / "run"
    args = run_args("bert_tiny", small_corpus, out, 8, "data.batch_size=4", "trainer.log_every=1",
                    "trainer.save_every=2")
    trainer = prepare(compose_config(args))  # trainer.on_nonfinite=stop is the default
    poison_step(trainer, 3)
    with pytest.raises(NonFiniteError, match=r"step 3: non-finite .* last good checkpoint: .*step_0000002"):
        trainer.fit()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000002"]
    assert all(torch.isfinite(v).all() for v in weights(out).values())
    assert "NaN" not in (out / "metrics.jsonl").read_text()


def test_skipped_steps_in_a_row_stop_the_run(small_corpus, tmp_path):
    from uer.train.trainer import NonFiniteError

    out = tmp_path / "run"
    args = run_args("bert_tiny", small_corpus, out, 8, "data.batch_size=4", "trainer.log_every=1",
                    "trainer.save_every=2", "trainer.on_nonfinite=skip", "trainer.max_consecutive_skips=3")
    trainer = prepare(compose_config(args))
    forward = trainer.forward

    def broken_from_step_3(batch):  # every batch after step 2 is non-finite, as broken weights would give
        out = forward(batch)
        if trainer.step >= 2:
            for term in out.terms.values():
                term.loss_sum = term.loss_sum * float("nan")
        return out

    trainer.forward = broken_from_step_3
    with pytest.raises(NonFiniteError, match=r"step 3: 3 batches in a row .* last good checkpoint: .*step_0000002"):
        trainer.fit()
    assert trainer.step == 2 and trainer.skipped_steps == 3
